import type { Point } from './snapshot';

/** Five minutes at one point a second, as the server keeps. */
export const HISTORY_POINTS = 300;

/** Appends a point, dropping the oldest beyond the bound (a new array). */
export function appendPoint(history: readonly Point[], point: Point, max = HISTORY_POINTS): Point[] {
  const last = history[history.length - 1];
  if (last !== undefined && last.at_ms >= point.at_ms) return [...history];
  const next = [...history, point];
  return next.length > max ? next.slice(next.length - max) : next;
}

/** One numeric series of the history, `null` where there is no value. */
export function series(history: readonly Point[], pick: (p: Point) => number | null): (number | null)[] {
  return history.map(pick);
}
