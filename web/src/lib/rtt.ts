/**
 * Round-trip-time statistics: a fixed-size ring of the most recent samples.
 * The header shows the average over the last 200; the chart plots the last 50.
 */
export class RttWindow {
  private readonly buf: Float64Array;
  private start = 0;
  private len = 0;
  private sum = 0;

  constructor(readonly capacity: number = 200) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive');
    this.buf = new Float64Array(capacity);
  }

  add(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    if (this.len < this.capacity) {
      this.buf[(this.start + this.len) % this.capacity] = ms;
      this.len += 1;
    } else {
      this.sum -= this.buf[this.start] ?? 0;
      this.buf[this.start] = ms;
      this.start = (this.start + 1) % this.capacity;
    }
    this.sum += ms;
  }

  get count(): number {
    return this.len;
  }

  /** Mean of the samples held, or null when there are none. */
  get average(): number | null {
    // Re-summing now and then would remove float drift; over 200 samples of
    // a few ms the drift is far below the 0.1 ms the UI shows.
    return this.len === 0 ? null : this.sum / this.len;
  }

  /** The newest `n` samples, oldest first. */
  last(n: number): number[] {
    const k = Math.max(0, Math.min(n, this.len));
    const out: number[] = [];
    for (let i = this.len - k; i < this.len; i++) {
      out.push(this.buf[(this.start + i) % this.capacity] ?? 0);
    }
    return out;
  }

  clear(): void {
    this.start = 0;
    this.len = 0;
    this.sum = 0;
  }
}

/** Formats a round-trip time for display: one decimal below 100 ms. */
export function formatMs(ms: number): string {
  return ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export interface ChartPoint {
  x: number;
  y: number;
  value: number;
}

/**
 * Lays out samples as points in a width×height box (y grows downwards), with
 * a y scale from 0 to a rounded-up maximum so the line does not jump about.
 */
export function chartPoints(
  samples: readonly number[],
  width: number,
  height: number,
  slots: number = samples.length,
): { points: ChartPoint[]; max: number } {
  const peak = samples.reduce((m, v) => Math.max(m, v), 0);
  const max = niceCeil(peak);
  const step = slots > 1 ? width / (slots - 1) : 0;
  // Right-align so the newest sample is always at the right edge.
  const offset = slots - samples.length;
  const points = samples.map((value, i) => ({
    x: round2((offset + i) * step),
    y: round2(height - (value / max) * height),
    value,
  }));
  return { points, max };
}

/** The smallest of 1, 2, 5 × 10^k that is ≥ v (and ≥ 1). */
export function niceCeil(v: number): number {
  if (!(v > 1)) return 1;
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) {
    if (m * exp >= v) return m * exp;
  }
  return 10 * exp;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
