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
 * Plain TypeScript with an injected clock so Vitest can drive it; the Svelte
 * side copies `items` into reactive state once per animation frame.
 */
import type { CalcResult } from './protocol/CalcResult';
import type { ChatMessage } from './protocol/ChatMessage';

export type Delivery = 'queued' | 'pending' | 'confirmed' | 'failed';

export interface Entry {
  /** Local, strictly increasing; the keyed-list key and the row-colour parity. */
  key: number;
  kind: 'chat' | 'system';
  author: string;
  text: string;
  /** Sent by this tab (its `client_id` carries this tab's prefix). */
  own: boolean;
  /** Own messages only; null for everyone else's and for system lines. */
  delivery: Delivery | null;
  /** Round-trip time in ms, once an own message is confirmed. */
  rtt: number | null;
  calc: CalcResult | null;
  clientId: string | null;
  /** Milliseconds since the epoch: server time when known, else local. */
  time: number;
}

export const MESSAGE_CAP = 1000;
export const PENDING_TIMEOUT_MS = 10_000;

interface Pending {
  key: number;
  /** Monotonic send time (performance.now()) for the round trip. */
  sentAt: number;
}

export class MessageStore {
  private list: Entry[] = [];
  private nextKey = 1;
  /** Own messages not yet echoed (pending or failed), by client_id. */
  private readonly pending = new Map<string, Pending>();
  /** Keys of messages written while offline, oldest first. */
  private queued: number[] = [];
  private holding = false;

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

  /** Adds an own message written while offline; it is sent by `sendQueued`. */
  addQueued(author: string, text: string, wallTime: number): Entry {
    const entry = this.push({
      kind: 'chat',
      author,
      text,
      own: true,
      delivery: 'queued',
      rtt: null,
      calc: null,
      clientId: null,
      time: wallTime,
    });
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

  /** Adds an own message the moment it is sent. `now` is monotonic (ms). */
  addPending(clientId: string, author: string, text: string, now: number, wallTime: number): Entry {
    const entry = this.push({
      kind: 'chat',
      author,
      text,
      own: true,
      delivery: 'pending',
      rtt: null,
      calc: null,
      clientId,
      time: wallTime,
    });
    this.pending.set(clientId, { key: entry.key, sentAt: now });
    return entry;
  }

  /**
   * Records a chat frame from the server. If it echoes one of our pending
   * messages, that entry is confirmed in place and the round trip returned.
   */
  receive(msg: ChatMessage, own: boolean, now: number): { entry: Entry; rtt: number | null } {
    const p = msg.client_id === null ? undefined : this.pending.get(msg.client_id);
    if (p !== undefined && msg.client_id !== null) {
      this.pending.delete(msg.client_id);
      const rtt = Math.max(0, now - p.sentAt);
      const updated = this.update(p.key, (e) => ({
        ...e,
        author: msg.author,
        text: msg.text,
        delivery: 'confirmed',
        rtt,
        calc: msg.calc,
        time: msg.server_time,
      }));
      if (updated !== undefined) return { entry: updated, rtt };
      // The pending entry was already dropped by the cap: append the echo.
    }
    const entry = this.push({
      kind: 'chat',
      author: msg.author,
      text: msg.text,
      own,
      delivery: own ? 'confirmed' : null,
      rtt: null,
      calc: msg.calc,
      clientId: msg.client_id,
      time: msg.server_time,
    });
    return { entry, rtt: null };
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

  /** Adds an informational line (joined a room, reconnected …). */
  system(text: string, wallTime: number): Entry {
    return this.push({
      kind: 'system',
      author: '',
      text,
      own: false,
      delivery: null,
      rtt: null,
      calc: null,
      clientId: null,
      time: wallTime,
    });
  }

  /** Empties the list; queued messages survive (they belong to no room yet). */
  clear(): void {
    const queued = this.queued.map((k) => this.get(k)).filter((e) => e?.delivery === 'queued');
    this.list = [];
    this.pending.clear();
    this.queued = [];
    for (const e of queued) if (e !== undefined) this.addQueued(e.author, e.text, e.time);
  }

  private push(fields: Omit<Entry, 'key'>): Entry {
    const entry: Entry = { key: this.nextKey++, ...fields };
    this.list.push(entry);
    this.trim();
    return entry;
  }

  private trim(): void {
    const limit = this.holding ? 2 * this.cap : this.cap;
    if (this.list.length > limit) {
      const dropped = this.list.splice(0, this.list.length - limit);
      for (const d of dropped) {
        if (d.clientId !== null && this.pending.get(d.clientId)?.key === d.key) {
          this.pending.delete(d.clientId);
        }
      }
    }
  }

  /** Keys are contiguous (append at the end, drop at the front), so lookup is O(1). */
  private index(key: number): number {
    const first = this.list[0];
    if (first === undefined) return -1;
    const i = key - first.key;
    return i >= 0 && i < this.list.length ? i : -1;
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
