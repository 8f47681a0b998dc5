/**
 * The message list: at most `cap` entries (oldest dropped first), own messages
 * tracked from "pending" (shown at once) to "confirmed" (the server's echo,
 * matched by `client_id`, with its round-trip time) or "failed" (no echo
 * within `timeoutMs`; a late echo still confirms it).
 *
 * Plain TypeScript with an injected clock so Vitest can drive it; the Svelte
 * side copies `items` into reactive state once per animation frame.
 */
import type { CalcResult } from './protocol/CalcResult';
import type { ChatMessage } from './protocol/ChatMessage';

export type Delivery = 'pending' | 'confirmed' | 'failed';

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

  clear(): void {
    this.list = [];
    this.pending.clear();
  }

  private push(fields: Omit<Entry, 'key'>): Entry {
    const entry: Entry = { key: this.nextKey++, ...fields };
    this.list.push(entry);
    if (this.list.length > this.cap) {
      const dropped = this.list.splice(0, this.list.length - this.cap);
      for (const d of dropped) {
        if (d.clientId !== null && this.pending.get(d.clientId)?.key === d.key) {
          this.pending.delete(d.clientId);
        }
      }
    }
    return entry;
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
