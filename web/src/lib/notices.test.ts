import { describe, expect, it } from 'vitest';
import { MAX_NOTICES, NoticeList } from './notices';

describe('NoticeList', () => {
  it('folds repeats into one notice with a count, newest first', () => {
    const n = new NoticeList();
    n.add('error', 'Slow down.', 'rate_limited');
    n.add('error', 'Bad name.', 'invalid_name');
    n.add('error', 'Slow down, next in 40 ms.', 'rate_limited');
    expect(n.items.map((x) => [x.code, x.count, x.message])).toEqual([
      ['rate_limited', 2, 'Slow down, next in 40 ms.'],
      ['invalid_name', 1, 'Bad name.'],
    ]);
  });

  it('keeps the newest few and dismisses by id', () => {
    const n = new NoticeList();
    for (let i = 0; i < 10; i++) n.add('decode', `bad ${i}`);
    expect(n.items).toHaveLength(MAX_NOTICES);
    const first = n.items[0];
    expect(first?.message).toBe('bad 9');
    if (first !== undefined) n.dismiss(first.id);
    expect(n.items[0]?.message).toBe('bad 8');
  });
});
