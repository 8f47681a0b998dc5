/**
 * The message list: at most `cap` entries (oldest dropped first), own messages
 * tracked from "pending" (shown at once) to "confirmed" (the server's echo,
 * matched by `client_id`, with its round-trip time) or "failed" (no echo
 * within `timeoutMs`; a late echo still confirms it). Messages written while
 * offline are "queued" until the connection is back; a failed one can be
 * retried, which makes it pending again under a new `client_id`.
 *
 * While the reader has scrolled up (`hold`), trimming waits until the list
 * reaches `2 × cap`, so the rows being read are not removed under them; back
 * at the bottom, the list is trimmed to `cap` again.
 *
 * History (issue 11). Chat entries carry the server's `id`, and the list
 * holds each id at most once (it is one room's list: the app empties it when
 * the room changes), so a message replayed after a reconnect never shows
 * twice. Entries have an `origin`: `live` (arrived while connected),
 * `earlier` (the welcome's recent history and scroll-back pages, shown
 * dimmed) or `missed` (replayed on a recovered resume). Replayed messages
 * never carry a round trip: only a live echo measures one.
 *
 * Keys increase along the list: appends take the next key, scroll-back pages
 * are put in front under keys below the first one. Replayed messages belong
 * before the own messages still waiting below the newest stored one
 * (queued, pending, failed: their ids will be higher), so those are taken
 * off, the replay appended, and they are put back under new keys; the order
 * by key stays the order on screen, which `scroll.ts` relies on and makes
 * lookup a binary search.
 *
 * Plain TypeScript with an injected clock so Vitest can drive it; the Svelte
 * side copies `items` into reactive state once per animation frame.
 */
import type { CalcResult } from './protocol/CalcResult';
import type { ChatMessage } from './protocol/ChatMessage';

export type Delivery = 'queued' | 'pending' | 'confirmed' | 'failed';

/** How a chat entry reached the list (see the module doc). */
export type Origin = 'live' | 'earlier' | 'missed';

export interface Entry {
  /** Local, strictly increasing along the list; the keyed-list key and the row-colour parity. */
  key: number;
  kind: 'chat' | 'system';
  author: string;
  text: string;
  /** Sent by this tab, or by this verified user (see `ChatApp.isOwn`). */
  own: boolean;
  /**
   * The verified author's user id (issue 16); null for a guest, a system
   * line, and every message of a server without `--auth`.
   */
  userId: string | null;
  /** Own messages only; null for everyone else's and for system lines. */
  delivery: Delivery | null;
  /** Round-trip time in ms, once an own message is confirmed by a live echo. */
  rtt: number | null;
  calc: CalcResult | null;
  clientId: string | null;
  /** Milliseconds since the epoch: server time when known, else local. */
  time: number;
  /** The server's id (its offset in the room's stream); null until the server has it, and for system lines. */
  id: number | null;
  origin: Origin;
}

export const MESSAGE_CAP = 1000;
export const PENDING_TIMEOUT_MS = 10_000;

interface Pending {
  key: number;
  /** Monotonic send time (performance.now()) for the round trip. */
  sentAt: number;
}

/** Own messages not yet stored by the server: they stay at the end of the list. */
function waiting(e: Entry): boolean {
  return e.own && e.id === null && (e.delivery === 'queued' || e.delivery === 'pending' || e.delivery === 'failed');
}

export class MessageStore {
  private list: Entry[] = [];
  private nextKey = 1;
  /** Own messages not yet echoed (pending or failed), by client_id. */
  private readonly pending = new Map<string, Pending>();
  /** Keys of messages written while offline, oldest first. */
  private queued: number[] = [];
  /** Server ids in the list: a message shows once. */
  private readonly ids = new Set<number>();
  private holding = false;
  private start = false;

  constructor(
    readonly cap: number = MESSAGE_CAP,
    readonly timeoutMs: number = PENDING_TIMEOUT_MS,
  ) {}

  get items(): readonly Entry[] {
    return this.list;
  }

  get pendingCount(): number {
    let n = 0;
    for (const p of this.pending.values()) {
      if (this.get(p.key)?.delivery === 'pending') n += 1;
    }
    return n;
  }

  /** Keeps the rows above the reader while they have scrolled up (see the module doc). */
  setHold(hold: boolean): void {
    this.holding = hold;
    if (!hold) this.trim();
  }

  get queuedCount(): number {
    return this.queued.length;
  }

  /** Whether the message with this server id is in the list. */
  has(id: number): boolean {
    return this.ids.has(id);
  }

  /** The smallest server id in the list, or null when no entry has one. */
  get oldestId(): number | null {
    for (const e of this.list) if (e.id !== null) return e.id;
    return null;
  }

  /**
   * Whether the list reaches back to the room's first stored message. Set by
   * the app when the server says so; cleared when trimming drops a message.
   */
  get atStart(): boolean {
    return this.start;
  }

  markStart(): void {
    this.start = true;
  }

  /** How many rows a scroll-back page may add before trimming would drop them again. */
  get space(): number {
    return Math.max(0, this.limit - this.list.length);
  }

  /**
   * Adds an own message written while offline; it is sent by `sendQueued`.
   * `userId`: the writer's verified id (null for a guest), shown until the echo says.
   */
  addQueued(author: string, text: string, wallTime: number, userId: string | null = null): Entry {
    const entry = this.push(this.ownEntry(author, text, 'queued', null, wallTime, userId));
    this.queued.push(entry.key);
    return entry;
  }

  /**
   * Hands at most `max` queued messages (oldest first) to `send`, which
   * returns the client_id it went out under, or null to keep it queued (and
   * stop). The caller paces the calls to the server's rate limit.
   */
  sendQueued(send: (text: string) => string | null, now: number, max = Infinity): number {
    let n = 0;
    while (this.queued.length > 0 && n < max) {
      const key = this.queued[0] as number;
      const e = this.get(key);
      if (e === undefined || e.delivery !== 'queued') {
        this.queued.shift();
        continue;
      }
      const clientId = send(e.text);
      if (clientId === null) break;
      this.queued.shift();
      this.markPending(key, clientId, now);
      n += 1;
    }
    return n;
  }

  /** The text of a failed message, to send again; null when it is not failed. */
  failedText(key: number): string | null {
    const e = this.get(key);
    return e?.delivery === 'failed' ? e.text : null;
  }

  /** Makes a failed message pending again under a new client_id. */
  retry(key: number, clientId: string, now: number): boolean {
    const e = this.get(key);
    if (e?.delivery !== 'failed') return false;
    if (e.clientId !== null) this.pending.delete(e.clientId);
    this.markPending(key, clientId, now);
    return true;
  }

  private markPending(key: number, clientId: string, now: number): void {
    this.update(key, (x) => ({ ...x, delivery: 'pending', clientId, rtt: null }));
    this.pending.set(clientId, { key, sentAt: now });
  }

  /** Adds an own message the moment it is sent. `now` is monotonic (ms); `userId` as for `addQueued`. */
  addPending(
    clientId: string,
    author: string,
    text: string,
    now: number,
    wallTime: number,
    userId: string | null = null,
  ): Entry {
    const entry = this.push(this.ownEntry(author, text, 'pending', clientId, wallTime, userId));
    this.pending.set(clientId, { key: entry.key, sentAt: now });
    return entry;
  }

  /**
   * Records a live chat frame from the server. If it echoes one of our
   * pending messages, that entry is confirmed in place and the round trip
   * returned. A message already in the list (by id) is ignored: `entry` is
   * null.
   */
  receive(msg: ChatMessage, own: boolean, now: number): { entry: Entry | null; rtt: number | null } {
    if (this.ids.has(msg.id)) return { entry: null, rtt: null };
    const p = msg.client_id === null ? undefined : this.pending.get(msg.client_id);
    if (p !== undefined && msg.client_id !== null) {
      this.pending.delete(msg.client_id);
      const rtt = Math.max(0, now - p.sentAt);
      const updated = this.update(p.key, (e) => ({
        ...e,
        author: msg.author,
        userId: msg.user_id ?? null,
        text: msg.text,
        delivery: 'confirmed',
        rtt,
        calc: msg.calc,
        time: msg.server_time,
        id: msg.id,
      }));
      if (updated !== undefined) {
        this.ids.add(msg.id);
        return { entry: updated, rtt };
      }
      // The pending entry was already dropped by the cap: append the echo.
    }
    return { entry: this.push(this.chatEntry(msg, own, 'live')), rtt: null };
  }

  /**
   * Appends messages the server replayed (`missed` after a recovered resume,
   * `earlier` for a welcome's recent history), oldest first, before the own
   * messages still waiting below the newest stored message. Ids already shown are skipped; an own
   * pending or failed message whose echo is among them is confirmed, without
   * a round trip, and moves to its place in the order. Returns how many rows
   * were added.
   */
  replay(msgs: readonly ChatMessage[], isOwn: (m: ChatMessage) => boolean, origin: Origin): number {
    const fresh = msgs.filter((m) => !this.ids.has(m.id));
    if (fresh.length === 0) return 0;
    // Own messages waiting below the newest stored one (system lines such as
    // "Bot left" may sit among them) are taken off and put back after.
    let lastStored = this.list.length - 1;
    while (lastStored >= 0 && this.list[lastStored]?.id === null) lastStored -= 1;
    const held: Entry[] = [];
    const rest: Entry[] = [];
    this.list.forEach((e, i) => (i > lastStored && waiting(e) ? held : rest).push(e));
    this.list = rest;
    let added = 0;
    for (const m of fresh) {
      if (this.ids.has(m.id)) continue; // a duplicate within the replay itself
      if (m.client_id !== null && this.pending.has(m.client_id)) {
        // Its live echo was lost with the connection, but the server stored
        // it: the entry moves to its place in the order, confirmed.
        this.pending.delete(m.client_id);
        const i = held.findIndex((e) => e.clientId === m.client_id);
        if (i >= 0) held.splice(i, 1);
        else this.remove(m.client_id);
      }
      this.list.push({ key: this.nextKey++, ...this.chatEntry(m, isOwn(m), origin) });
      this.ids.add(m.id);
      added += 1;
    }
    // The held entries go back at the end, under new keys (see the module doc).
    const rekeyed = new Map<number, number>();
    for (const e of held) {
      const moved: Entry = { ...e, key: this.nextKey++ };
      this.list.push(moved);
      rekeyed.set(e.key, moved.key);
      const p = e.clientId === null ? undefined : this.pending.get(e.clientId);
      if (p !== undefined && p.key === e.key) p.key = moved.key;
    }
    this.queued = this.queued.map((k) => rekeyed.get(k) ?? k);
    this.trim();
    return added;
  }

  /**
   * Puts a scroll-back page (oldest first) in front of the list, as
   * `earlier` messages, keeping only those older than the oldest shown and
   * no more than `space` allows. Returns how many rows were added.
   */
  prepend(msgs: readonly ChatMessage[], isOwn: (m: ChatMessage) => boolean): number {
    const oldest = this.oldestId;
    const older = msgs.filter((m) => (oldest === null || m.id < oldest) && !this.ids.has(m.id));
    const fit = older.slice(Math.max(0, older.length - this.space));
    let key = (this.list[0]?.key ?? this.nextKey) - fit.length;
    const rows = fit.map((m) => {
      this.ids.add(m.id);
      return { key: key++, ...this.chatEntry(m, isOwn(m), 'earlier') };
    });
    this.list.unshift(...rows);
    return rows.length;
  }

  /** Marks pending messages older than the timeout as failed; returns how many. */
  expire(now: number): number {
    let n = 0;
    for (const p of this.pending.values()) {
      if (now - p.sentAt < this.timeoutMs) continue;
      const e = this.get(p.key);
      if (e?.delivery !== 'pending') continue;
      this.update(p.key, (x) => ({ ...x, delivery: 'failed' }));
      n += 1;
    }
    return n;
  }

  /**
   * Marks the oldest pending message failed at once (the server refused to
   * store it, `unavailable`); returns its key, or null when none is pending.
   * A later echo still confirms it, as for a timeout.
   */
  failOldestPending(): number | null {
    let oldest: Pending | null = null;
    for (const p of this.pending.values()) {
      if (this.get(p.key)?.delivery !== 'pending') continue;
      if (oldest === null || p.sentAt < oldest.sentAt || (p.sentAt === oldest.sentAt && p.key < oldest.key)) oldest = p;
    }
    if (oldest === null) return null;
    this.update(oldest.key, (x) => ({ ...x, delivery: 'failed' }));
    return oldest.key;
  }

  /** Adds an informational line (joined a room, reconnected …). */
  system(text: string, wallTime: number): Entry {
    return this.push({
      kind: 'system',
      author: '',
      text,
      own: false,
      userId: null,
      delivery: null,
      rtt: null,
      calc: null,
      clientId: null,
      time: wallTime,
      id: null,
      origin: 'live',
    });
  }

  /**
   * Forgets which stream the rows' ids belong to: after a reconnect that
   * says nothing about resuming, the server's ids may have started again
   * (a server without stored history), so they no longer identify messages.
   * The rows stay.
   */
  forgetIds(): void {
    this.ids.clear();
    this.start = false;
    this.list = this.list.map((e) => (e.id === null ? e : { ...e, id: null }));
  }

  /**
   * Empties the list for another room; queued messages survive (they belong
   * to no room yet). With `keepWaiting`, pending and failed own messages
   * survive too: the list is replaced for the same room (a resume the server
   * could not recover), where their echo may still come or Retry still
   * applies.
   */
  clear(keepWaiting = false): void {
    const kept = this.list.filter((e) => (keepWaiting ? waiting(e) : e.delivery === 'queued' && e.own));
    this.list = [];
    this.ids.clear();
    this.start = false;
    if (!keepWaiting) this.pending.clear();
    const pending = new Map(this.pending);
    this.pending.clear();
    this.queued = [];
    for (const e of kept) {
      const moved = this.push({ ...e });
      if (e.delivery === 'queued') this.queued.push(moved.key);
      const p = e.clientId === null ? undefined : pending.get(e.clientId);
      if (p !== undefined && e.clientId !== null && p.key === e.key) {
        this.pending.set(e.clientId, { key: moved.key, sentAt: p.sentAt });
      }
    }
  }

  private get limit(): number {
    return this.holding ? 2 * this.cap : this.cap;
  }

  private ownEntry(
    author: string,
    text: string,
    delivery: Delivery,
    clientId: string | null,
    wallTime: number,
    userId: string | null,
  ): Omit<Entry, 'key'> {
    return {
      kind: 'chat',
      author,
      text,
      own: true,
      userId,
      delivery,
      rtt: null,
      calc: null,
      clientId,
      time: wallTime,
      id: null,
      origin: 'live',
    };
  }

  private chatEntry(msg: ChatMessage, own: boolean, origin: Origin): Omit<Entry, 'key'> {
    return {
      kind: 'chat',
      author: msg.author,
      text: msg.text,
      own,
      userId: msg.user_id ?? null,
      delivery: own ? 'confirmed' : null,
      rtt: null,
      calc: msg.calc,
      clientId: msg.client_id,
      time: msg.server_time,
      id: msg.id,
      origin,
    };
  }

  private push(fields: Omit<Entry, 'key'> & { key?: number }): Entry {
    const entry: Entry = { ...fields, key: this.nextKey++ };
    this.list.push(entry);
    if (entry.id !== null) this.ids.add(entry.id);
    this.trim();
    return entry;
  }

  /** Removes the unconfirmed entry of an own message, found by its client_id. */
  private remove(clientId: string): void {
    const i = this.list.findIndex((e) => e.clientId === clientId && e.id === null);
    if (i >= 0) this.list.splice(i, 1);
  }

  private trim(): void {
    const limit = this.limit;
    if (this.list.length > limit) {
      const dropped = this.list.splice(0, this.list.length - limit);
      for (const d of dropped) {
        if (d.clientId !== null && this.pending.get(d.clientId)?.key === d.key) {
          this.pending.delete(d.clientId);
        }
        if (d.id !== null) {
          this.ids.delete(d.id);
          this.start = false;
        }
      }
    }
  }

  /** Keys increase along the list (see the module doc): binary search. */
  private index(key: number): number {
    let lo = 0;
    let hi = this.list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const k = (this.list[mid] as Entry).key;
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private get(key: number): Entry | undefined {
    const i = this.index(key);
    return i < 0 ? undefined : this.list[i];
  }

  /** Replaces an entry with a new object, so keyed views see the change. */
  private update(key: number, f: (e: Entry) => Entry): Entry | undefined {
    const i = this.index(key);
    const e = i < 0 ? undefined : this.list[i];
    if (e === undefined) return undefined;
    const next = f(e);
    this.list[i] = next;
    return next;
  }
}
