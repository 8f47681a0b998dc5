import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff';

describe('Backoff', () => {
  it('doubles the window up to the cap', () => {
    const hi = new Backoff({ baseMs: 500, maxMs: 10_000, random: () => 0.999999 });
    const seq = Array.from({ length: 8 }, () => hi.next());
    expect(seq).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  });

  it('never waits less than half the window (equal jitter)', () => {
    const lo = new Backoff({ baseMs: 500, maxMs: 10_000, random: () => 0 });
    expect(Array.from({ length: 6 }, () => lo.next())).toEqual([250, 500, 1000, 2000, 4000, 5000]);
  });

  it('spreads clients that lost the same server', () => {
    const delays = Array.from({ length: 200 }, () => new Backoff({ baseMs: 1000, maxMs: 10_000 }).next());
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(500);
    expect(Math.max(...delays)).toBeLessThanOrEqual(1000);
    expect(new Set(delays).size).toBeGreaterThan(50);
  });

  it('starts over after reset', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 1 });
    b.next();
    b.next();
    expect(b.attempts).toBe(2);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(100);
  });

  it('does not overflow after very many attempts', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.5 });
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(750);
  });
});
