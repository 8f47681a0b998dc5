/**
 * What a screen reader hears about new messages: at most one sentence every
 * `gapMs`, naming the newest message and how many arrived since the last
 * one. The message list itself is not a live region: at 40 messages a second
 * it would flood the listener; this reads one line every few seconds.
 */
export const ANNOUNCE_GAP_MS = 3000;
const MAX_CHARS = 140;

export class Announcer {
  private count = 0;
  private latest = '';
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(readonly gapMs: number = ANNOUNCE_GAP_MS) {}

  /** Notes a new message (`author` empty for a system line). */
  offer(author: string, text: string): void {
    this.count += 1;
    const line = author === '' ? text : `${author}: ${text}`;
    this.latest = line.length > MAX_CHARS ? `${line.slice(0, MAX_CHARS - 1)}…` : line;
  }

  /** The sentence to announce now, or null (nothing new, or too soon). */
  take(now: number): string | null {
    if (this.count === 0 || now - this.lastAt < this.gapMs) return null;
    const s = this.count === 1 ? this.latest : `${this.count} new messages. Latest, ${this.latest}`;
    this.count = 0;
    this.lastAt = now;
    return s;
  }
}
