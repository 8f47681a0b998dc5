import { describe, expect, it } from 'vitest';
import { appendPoint, HISTORY_POINTS } from './history';
import { bytes, duration, micros, rate } from './format';
import { parseHello, parseSnapshot, type Point } from './snapshot';

const point = (at_ms: number): Point => ({
  at_ms,
  connections: 1,
  messages_per_sec: 0,
  deliveries_per_sec: 0,
  p99_us: null,
  rss_bytes: 1,
  cpu_percent: 0,
});

describe('format', () => {
  it('prints sizes, latencies, rates and durations for people', () => {
    expect(bytes(512)).toBe('512 B');
    expect(bytes(5 * 1024 * 1024)).toBe('5.0 MiB');
    expect(bytes(300 * 1024 * 1024)).toBe('300 MiB');
    expect(micros(null)).toBe('–');
    expect(micros(250)).toBe('250 µs');
    expect(micros(2500)).toBe('2.50 ms');
    expect(micros(2_500_000)).toBe('2.50 s');
    expect(rate(0)).toBe('0');
    expect(rate(2.25)).toBe('2.3');
    expect(rate(12345.6)).toBe('12,346');
    expect(duration(1500)).toBe('1.5 s');
    expect(duration(125_000)).toBe('2 min 5 s');
  });
});

describe('history', () => {
  it('keeps the last five minutes and ignores a point it has already', () => {
    let h: Point[] = [];
    for (let i = 0; i < HISTORY_POINTS + 20; i += 1) h = appendPoint(h, point(i));
    expect(h).toHaveLength(HISTORY_POINTS);
    expect(h[0]?.at_ms).toBe(20);
    expect(appendPoint(h, point(5))).toHaveLength(HISTORY_POINTS);
  });
});

describe('snapshot parsing', () => {
  it('accepts the hello and refuses what is not a snapshot', () => {
    expect(parseHello('{"access":"admin","token_set":true,"history":[]}')).toEqual({
      access: 'admin',
      token_set: true,
      history: [],
    });
    expect(parseHello('{"access":"root"}')).toBeNull();
    expect(parseSnapshot('{"tree":{}}')).toBeNull();
    expect(parseSnapshot('[]')).toBeNull();
  });
});
