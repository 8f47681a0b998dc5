import { describe, expect, it } from 'vitest';
import { chartPoints, formatMs, niceCeil, RttWindow } from './rtt';

describe('RttWindow', () => {
  it('has no average until a sample arrives', () => {
    const w = new RttWindow(3);
    expect(w.average).toBeNull();
    expect(w.last(5)).toEqual([]);
  });

  it('averages only the newest `capacity` samples', () => {
    const w = new RttWindow(200);
    for (let i = 1; i <= 300; i++) w.add(i);
    // Samples 101..300 remain: mean 200.5.
    expect(w.count).toBe(200);
    expect(w.average).toBeCloseTo(200.5, 9);
  });

  it('returns the last n samples oldest first across the ring wrap', () => {
    const w = new RttWindow(4);
    [1, 2, 3, 4, 5, 6].forEach((v) => w.add(v));
    expect(w.last(50)).toEqual([3, 4, 5, 6]);
    expect(w.last(2)).toEqual([5, 6]);
  });

  it('ignores impossible samples', () => {
    const w = new RttWindow(4);
    w.add(Number.NaN);
    w.add(-1);
    w.add(Number.POSITIVE_INFINITY);
    w.add(2);
    expect(w.count).toBe(1);
    expect(w.average).toBe(2);
  });

  it('clears', () => {
    const w = new RttWindow(2);
    w.add(1);
    w.clear();
    expect(w.average).toBeNull();
  });
});

describe('chart layout', () => {
  it('rounds the scale up to 1, 2 or 5 × 10^k', () => {
    expect([0, 0.3, 1, 1.2, 3, 7, 10, 11, 49, 120, 999].map(niceCeil)).toEqual([
      1, 1, 1, 2, 5, 10, 10, 20, 50, 200, 1000,
    ]);
  });

  it('right-aligns samples and maps values to heights', () => {
    const { points, max } = chartPoints([0, 5, 10], 100, 50, 5);
    expect(max).toBe(10);
    expect(points.map((p) => p.x)).toEqual([50, 75, 100]);
    expect(points.map((p) => p.y)).toEqual([50, 25, 0]);
    expect(points.map((p) => p.value)).toEqual([0, 5, 10]);
  });

  it('copes with a single sample', () => {
    expect(chartPoints([3], 100, 50, 1).points).toEqual([{ x: 0, y: 20, value: 3 }]);
  });

  it('formats milliseconds', () => {
    expect(formatMs(0.44)).toBe('0.4 ms');
    expect(formatMs(12.06)).toBe('12.1 ms');
    expect(formatMs(250.4)).toBe('250 ms');
  });
});
