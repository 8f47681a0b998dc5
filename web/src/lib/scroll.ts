/**
 * Keeping the reader's place in the message list. Rows are added at the
 * bottom and, at the cap, removed at the top; a reader who has scrolled up
 * must not see the text move. Before an update the view records an anchor
 * (the first row still visible and how far its top is from the viewport's
 * top); after it, the scroll offset is set so that row sits where it was.
 * The browser's own scroll anchoring is off (`overflow-anchor: none`)
 * because it fights the stick-to-bottom behaviour.
 */
export interface RowBox {
  key: number;
  /** Offset of the row's top from the top of the scrolled content. */
  top: number;
  height: number;
}

export interface Anchor {
  key: number;
  /** `row.top - scrollTop` when recorded. */
  offset: number;
}

/**
 * The first row whose bottom is below `scrollTop` (binary search: rows are
 * in order), or null when there is none. `box(i)` measures row `i` lazily, so
 * only about log2(n) rows are measured.
 */
export function findAnchor(count: number, box: (i: number) => RowBox, scrollTop: number): Anchor | null {
  let lo = 0;
  let hi = count - 1;
  let found: RowBox | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const b = box(mid);
    if (b.top + b.height > scrollTop) {
      found = b;
      hi = mid - 1;
    } else {
      lo = mid + 1;
    }
  }
  return found === null ? null : { key: found.key, offset: found.top - scrollTop };
}

/** The scroll offset that puts the anchor row back where it was. */
export function restoreScrollTop(anchor: Anchor, rowTopNow: number): number {
  return Math.max(0, rowTopNow - anchor.offset);
}

/** New chat messages below the reader: those with a key above the last one seen. */
export function countNewer<T extends { key: number; kind: string }>(items: readonly T[], seenKey: number): number {
  let n = 0;
  for (let i = items.length - 1; i >= 0; i--) {
    const e = items[i];
    if (e === undefined || e.key <= seenKey) break;
    if (e.kind === 'chat') n += 1;
  }
  return n;
}
