/**
 * Dismissible notices: server `error` frames, frames the codec refused, and
 * connection news. Repeats of the same notice (same error code, or same text)
 * are folded into one with a count (auto-send into the rate limit would otherwise bury the page), and
 * only the newest few are kept.
 */
export type NoticeKind = 'error' | 'decode' | 'info';

export interface Notice {
  id: number;
  kind: NoticeKind;
  /** The server's error code, when there is one. */
  code: string | null;
  message: string;
  count: number;
}

export const MAX_NOTICES = 5;

export class NoticeList {
  private list: Notice[] = [];
  private nextId = 1;

  get items(): readonly Notice[] {
    return this.list;
  }

  add(kind: NoticeKind, message: string, code: string | null = null): Notice {
    // Server errors fold by code (their sentences vary, e.g. "next one
    // accepted in 40 ms"), keeping the newest sentence; others by text.
    const same = this.list.find(
      (n) => n.kind === kind && n.code === code && (code !== null || n.message === message),
    );
    let notice: Notice;
    if (same !== undefined) {
      notice = { ...same, message, count: same.count + 1 };
      this.list = [notice, ...this.list.filter((n) => n !== same)];
    } else {
      notice = { id: this.nextId++, kind, code, message, count: 1 };
      this.list = [notice, ...this.list].slice(0, MAX_NOTICES);
    }
    return notice;
  }

  dismiss(id: number): void {
    this.list = this.list.filter((n) => n.id !== id);
  }

  clear(): void {
    this.list = [];
  }
}
