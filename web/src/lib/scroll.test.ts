import { describe, expect, it } from 'vitest';
import { countNewer, findAnchor, restoreScrollTop, type RowBox } from './scroll';

/** Rows of the given heights, keys from `firstKey`. */
function layout(heights: number[], firstKey = 1): RowBox[] {
  let top = 0;
  return heights.map((height, i) => {
    const b = { key: firstKey + i, top, height };
    top += height;
    return b;
  });
}

describe('reading position at the cap', () => {
  it('anchors on the first row still visible, with its offset', () => {
    const rows = layout([30, 30, 60, 30]);
    const at = (i: number): RowBox => rows[i] as RowBox;
    expect(findAnchor(rows.length, at, 0)).toEqual({ key: 1, offset: 0 });
    expect(findAnchor(rows.length, at, 70)).toEqual({ key: 3, offset: -10 });
    expect(findAnchor(rows.length, at, 500)).toBeNull();
    expect(findAnchor(0, at, 0)).toBeNull();
  });

  it('measures only O(log n) rows', () => {
    const rows = layout(Array.from({ length: 1000 }, () => 24));
    let measured = 0;
    const anchor = findAnchor(rows.length, (i) => {
      measured += 1;
      return rows[i] as RowBox;
    }, 12_000);
    expect(anchor).toEqual({ key: 501, offset: 0 });
    expect(measured).toBeLessThanOrEqual(11);
  });

  it('keeps the anchored row in place when rows above it are trimmed', () => {
    const before = layout([20, 40, 30, 30, 30]);
    const anchor = findAnchor(before.length, (i) => before[i] as RowBox, 75);
    expect(anchor).toEqual({ key: 3, offset: -15 });
    // Two rows (60 px) trimmed from the top, one added at the bottom.
    const after = layout([30, 30, 30, 50], 3);
    const row = after.find((r) => r.key === anchor?.key) as RowBox;
    const top = restoreScrollTop(anchor as NonNullable<typeof anchor>, row.top);
    expect(top).toBe(15);
    // The anchor row's position relative to the viewport is unchanged.
    expect(row.top - top).toBe((before[2] as RowBox).top - 75);
  });

  it('never scrolls above the top', () => {
    expect(restoreScrollTop({ key: 1, offset: 40 }, 0)).toBe(0);
  });
});

describe('countNewer', () => {
  it('counts chat messages after the last seen key, not system lines', () => {
    const items = [
      { key: 1, kind: 'chat' },
      { key: 2, kind: 'chat' },
      { key: 3, kind: 'system' },
      { key: 4, kind: 'chat' },
    ];
    expect(countNewer(items, 1)).toBe(2);
    expect(countNewer(items, 4)).toBe(0);
    expect(countNewer([], 0)).toBe(0);
  });
});
