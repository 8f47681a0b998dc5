import { describe, expect, it } from 'vitest';
import { Announcer } from './announce';

describe('Announcer', () => {
  it('announces one message as it is, then waits out the gap', () => {
    const a = new Announcer(3000);
    expect(a.take(0)).toBeNull();
    a.offer('Ada', 'hi');
    expect(a.take(0)).toBe('Ada: hi');
    a.offer('Bob', 'one');
    a.offer('', 'Carol joined');
    expect(a.take(2999)).toBeNull();
    expect(a.take(3000)).toBe('2 new messages. Latest, Carol joined');
    expect(a.take(9000)).toBeNull();
  });

  it('reads 40 messages a second as one sentence per gap', () => {
    const a = new Announcer(3000);
    const said: string[] = [];
    for (let t = 0; t < 10_000; t += 25) {
      a.offer('bot', `m${t}`);
      const s = a.take(t);
      if (s !== null) said.push(s);
    }
    expect(said.length).toBe(4);
  });

  it('shortens long messages', () => {
    const a = new Announcer();
    a.offer('Ada', 'x'.repeat(4000));
    expect((a.take(0) ?? '').length).toBe(140);
  });
});
