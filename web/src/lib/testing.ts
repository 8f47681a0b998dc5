/**
 * Test doubles for `connection.ts` and `chat.svelte.ts`: a scriptable socket
 * and a manual clock. Imported by tests only, so never bundled.
 */
import type { SocketLike, Timers } from './connection';

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  readonly sent: string[] = [];
  closedWith: number | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(data);
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  /** Server side: accept the connection. */
  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }

  /** Server side: deliver a text frame (objects are JSON-encoded). */
  deliver(frame: object | string): void {
    const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
    this.onmessage?.({ data } as MessageEvent);
  }

  /** Server side: drop the connection. */
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' } as CloseEvent);
  }

  frames(): Record<string, unknown>[] {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }
}

/** Timers driven by `advance`, so backoff and heartbeats run instantly. */
export class ManualTimers implements Timers {
  time = 0;
  private seq = 0;
  private readonly jobs = new Map<number, { at: number; fn: () => void; every: number | null }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.jobs.set(id, { at: this.time + ms, fn, every: null });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.jobs.delete(handle as number);
  }

  setInterval(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.jobs.set(id, { at: this.time + ms, fn, every: ms });
    return id;
  }

  clearInterval(handle: unknown): void {
    this.jobs.delete(handle as number);
  }

  now(): number {
    return this.time;
  }

  /** Runs every job due within the next `ms`, in time order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void; every: number | null }] | undefined;
      for (const entry of this.jobs) {
        if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
      }
      if (next === undefined) break;
      const [id, job] = next;
      this.time = job.at;
      if (job.every === null) this.jobs.delete(id);
      else job.at += job.every;
      job.fn();
    }
    this.time = end;
  }

  get pending(): number {
    return this.jobs.size;
  }
}

export const WELCOME = {
  type: 'welcome',
  session_id: 1,
  name: 'Ada',
  room: 'lobby',
  num_participants: 2,
  participants: ['Ada', 'Grace'],
  limits: { max_text_chars: 4000, max_frame_bytes: 16384, max_messages_per_sec: 20 },
  epoch: 'e1',
  last_id: 0,
  recovered: null,
  user_id: null,
  history: [],
} as const;

/** A `chat` frame as the server sends it (live, or inside a history). */
export function chatFrame(id: number, text: string, over: Record<string, unknown> = {}) {
  return {
    type: 'chat',
    id,
    room: 'lobby',
    author: 'Grace',
    text,
    client_id: null,
    sent_at: null,
    server_time: 1_700_000_000_000 + id,
    calc: null,
    ...over,
  };
}
