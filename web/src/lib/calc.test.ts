import { describe, expect, it } from 'vitest';
import { collapse, describeDigits, fetchFullValue, hiddenDigits, isCollapsible, looksLikeCalc } from './calc';
import type { CalcResult } from './protocol/CalcResult';

const base: CalcResult = {
  id: 'c1',
  expr: '20!',
  status: 'ok',
  value: '2432902008176640000',
  digits: 19,
  truncated: false,
  elapsed_ms: 0,
  reason: null,
};

describe('calc helpers', () => {
  it('recognises factorial requests', () => {
    expect(['20!', ' 200 ! ', '60000!'].every(looksLikeCalc)).toBe(true);
    expect(['hi!', '20', '!', '2!!', '-3!'].some(looksLikeCalc)).toBe(false);
  });

  it('collapses long values and leaves short ones alone', () => {
    expect(collapse('12345', 10)).toBe('12345');
    expect(collapse('1234567890abc', 10)).toBe('12345…90abc');
    expect(isCollapsible(base)).toBe(false);
    expect(isCollapsible({ ...base, value: '1'.repeat(5000) })).toBe(true);
    expect(isCollapsible({ ...base, truncated: true })).toBe(true);
    expect(isCollapsible({ ...base, value: null, status: 'rejected' })).toBe(false);
  });

  it('describes digit counts', () => {
    expect(describeDigits(1)).toBe('1 digit');
    expect(describeDigits(281_734)).toBe('281,734 digits');
    expect(describeDigits(null)).toBe('');
  });

  it('fetches the full value from /calc/{id}', async () => {
    const seen: string[] = [];
    const fake = (async (url: string) => {
      seen.push(url);
      return new Response('123456\n', { status: 200 });
    }) as typeof fetch;
    expect(await fetchFullValue('c 1', fake)).toEqual({ ok: true, value: '123456' });
    expect(seen).toEqual(['/calc/c%201']);
  });

  it('reports a value the server no longer keeps, and network errors', async () => {
    const gone = (async () => new Response('', { status: 404 })) as typeof fetch;
    expect(await fetchFullValue('c1', gone)).toEqual({
      ok: false,
      error: 'The server no longer keeps this value.',
    });
    const down = (async () => {
      throw new TypeError('Failed to fetch');
    }) as typeof fetch;
    expect(await fetchFullValue('c1', down)).toEqual({ ok: false, error: 'Failed to fetch' });
  });
});

describe('hiddenDigits', () => {
  it('counts the digits an abbreviation leaves out', () => {
    expect(hiddenDigits('123…789', 10)).toBe(4);
    expect(hiddenDigits('2432902008176640000', 19)).toBe(0);
    expect(hiddenDigits('1', null)).toBe(0);
  });
});
