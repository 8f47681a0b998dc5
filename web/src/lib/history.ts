/**
 * Where the client stands in a room's message stream (issue 11): the stream's
 * `epoch` and the newest `id` it has, which a reconnect offers back as
 * `?since=<id>&epoch=<epoch>` to get exactly the messages it missed; and what
 * a `welcome` means for the list on screen.
 *
 * Ids are per room and strictly increasing, and live frames continue right
 * after the welcome's `last_id`, so "the newest id it has" is the welcome's
 * `last_id` raised by every live frame. A server that sends no epoch (an
 * empty string) keeps no history: the client then never asks to resume.
 *
 * Plain TypeScript; `chat.svelte.ts` applies the verdicts to the list.
 */
import type { ChatMessage } from './protocol/ChatMessage';
import type { HistoryPage } from './protocol/HistoryPage';
import type { Since } from './protocol/Since';
import type { Welcome } from './protocol/Welcome';

/** The page size of scroll-back requests (the server allows 1 to 100). */
export const HISTORY_PAGE = 50;
/** A scroll-back request unanswered this long (ms) is given up and may be sent again. */
export const HISTORY_TIMEOUT_MS = 10_000;

/**
 * What a welcome means for the list:
 * - `fresh`: a room entered without resuming: show its history as earlier messages;
 * - `recovered`: the messages after `after` follow in `history`: append those;
 * - `stale`: the server could not recover (too many missed, or the epoch
 *   changed): what is shown may have gaps, replace it with the history;
 * - `unknown`: a server that keeps no history (no epoch): keep the list,
 *   append what is new.
 *
 * A welcome the client did not ask for (the server restarted the room) is
 * merged by id: `recovered` when its history reaches back to the newest id
 * shown, `stale` when there is a gap or the epoch changed.
 */
export type WelcomeVerdict = 'fresh' | 'recovered' | 'stale' | 'unknown';

export interface WelcomeReading {
  verdict: WelcomeVerdict;
  /** The newest id the client had before this welcome: only later ones are new. */
  after: number;
  /** Whether the stream itself was lost (another epoch), for telling the user why. */
  epochChanged: boolean;
}

export class StreamPosition {
  private room: string | null = null;
  private epoch = '';
  private last = 0;

  /** The newest id of the current room's stream the client has (0 if none). */
  get lastId(): number {
    return this.last;
  }

  /** What to offer back when (re)connecting to `room`: null unless it is the room held. */
  since(room: string): Since | null {
    if (room !== this.room || this.epoch === '') return null;
    return { id: this.last, epoch: this.epoch };
  }

  /** Takes a welcome in; `asked` is what the connection offered (null: nothing). */
  welcome(w: Welcome, asked: Since | null): WelcomeReading {
    const after = this.last;
    const epochChanged = w.epoch !== (asked?.epoch ?? this.epoch);
    let verdict: WelcomeVerdict;
    if (w.room !== this.room) verdict = 'fresh';
    // An answer to a resume. `recovered: true` for another epoch would be a
    // server bug: trust the epoch.
    else if (asked !== null && w.recovered !== null) verdict = w.recovered && !epochChanged ? 'recovered' : 'stale';
    else if (w.epoch === '') verdict = 'unknown';
    else if (epochChanged) verdict = 'stale';
    else {
      // Not asked (or not answered): merge by id if nothing is missing in between.
      const first = w.history[0]?.id;
      const gap = w.last_id > after && (first === undefined || first > after + 1);
      verdict = gap ? 'stale' : 'recovered';
    }
    this.room = w.room;
    this.epoch = w.epoch;
    const newest = w.history.at(-1)?.id ?? 0;
    this.last = Math.max(w.last_id, newest);
    return { verdict, after, epochChanged };
  }

  /** A live chat frame: whether it is new (a frame at or below the last id was already shown). */
  live(m: ChatMessage): boolean {
    if (m.room !== this.room) return false;
    if (m.id <= this.last) return false;
    this.last = m.id;
    return true;
  }

  /** Forgets the room (the list was emptied for another). */
  reset(): void {
    this.room = null;
    this.epoch = '';
    this.last = 0;
  }
}

/**
 * Whether a welcome shows the list reaching back to the room's first
 * message: an empty room, or history starting at id 1.
 */
export function welcomeAtStart(w: Welcome): boolean {
  const first = w.history[0];
  return first === undefined ? w.last_id === 0 : first.id === 1;
}

/**
 * Scroll-back: one `history` request at a time, for the room it was asked
 * in; an answer for another room, or after a reconnect, is ignored.
 */
export class ScrollBack {
  private asked: { room: string; before: number; at: number } | null = null;

  constructor(readonly timeoutMs: number = HISTORY_TIMEOUT_MS) {}

  /** Whether a request is in flight (and not yet given up at `now`). */
  loading(now: number): boolean {
    return this.asked !== null && now - this.asked.at < this.timeoutMs;
  }

  /**
   * The request to send for older messages than `oldestId` (the list's, or
   * null when it holds none, then older than `lastId + 1`), at most `space`
   * of them; null when one is already in flight or there is nothing to ask.
   * A request unanswered for `timeoutMs` is given up, so a server that
   * never answers cannot leave the list "loading" for good.
   */
  request(
    room: string,
    oldestId: number | null,
    lastId: number,
    space: number,
    now: number,
  ): { before: number; limit: number } | null {
    if (this.loading(now) || space < 1) return null;
    const before = oldestId ?? lastId + 1;
    if (before <= 1) return null;
    this.asked = { room, before, at: now };
    return { before, limit: Math.min(HISTORY_PAGE, space) };
  }

  /** The answer, or null when it answers nothing asked here (then it is dropped). */
  answer(page: HistoryPage): HistoryPage | null {
    const asked = this.asked;
    if (asked === null || page.room !== asked.room) return null;
    this.asked = null;
    return { ...page, messages: page.messages.filter((m) => m.id < asked.before) };
  }

  /** The connection or the room changed: an answer still to come is void. */
  cancel(): void {
    this.asked = null;
  }
}
