import { describe, expect, it } from 'vitest';
import { describeClose, describeError, disconnectedLine, notRecoveredLine } from './status';

describe('connection text', () => {
  it('never shows a bare close code', () => {
    for (const code of [1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1013, 4000]) {
      expect(describeClose(code)).not.toMatch(/\d{4}/);
    }
    expect(describeClose(1001)).toBe('The server restarted or went away.');
    expect(describeClose(1006)).toBe('The connection to the server was lost.');
    expect(disconnectedLine(1001)).toContain('queued');
  });

  it('writes the rate-limit error without its code or a stale wait time', () => {
    const s = describeError('rate_limited', 'Too fast; next one accepted in 12 ms', 20);
    expect(s).not.toContain('rate_limited');
    expect(s).not.toContain('12 ms');
    expect(s).toContain('20 messages a second');
    expect(describeError('invalid_name', 'Names have at most 32 characters.', 20)).toBe(
      'Names have at most 32 characters.',
    );
  });
});

describe('history text', () => {
  it('says why a resume could not be recovered and what is shown instead', () => {
    expect(notRecoveredLine(true)).toMatch(/could not recover.*lost its stored history.*recent history/i);
    expect(notRecoveredLine(false)).toMatch(/too many.*recent history/i);
  });

  it('explains an unavailable refusal as not sent', () => {
    const s = describeError('unavailable', 'The message could not be stored', 20);
    expect(s).toMatch(/not sent/);
    expect(s).not.toContain('unavailable');
  });
});
