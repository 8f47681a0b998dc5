/**
 * One WebSocket to `/ws` that comes back by itself.
 *
 * After a close the connection waits a backoff delay with jitter (see
 * `backoff.ts`) and dials again, with the URL recomputed each time so the
 * current name and room are used. The backoff resets only when the server's
 * `welcome` arrives, so a server that accepts and immediately drops does not
 * get hammered. A periodic `ping` detects half-open sockets: when nothing has
 * arrived for `staleMs`, the socket is closed and redialled.
 *
 * Everything platform-specific (socket, timers, clock) is injected so the
 * policy is unit-tested without a browser.
 */
import { Backoff } from './backoff';
import { decode, encode } from './codec';
import type { ClientFrame } from './protocol/ClientFrame';
import type { ServerFrame } from './protocol/ServerFrame';

export type ConnState =
  | { state: 'connecting'; attempt: number }
  | { state: 'open' }
  | { state: 'waiting'; retryAt: number; attempt: number; code: number }
  /** `code`: the close that ended it for good (see `isFinal`), null when the app stopped it. */
  | { state: 'stopped'; code: number | null };

/** The part of the browser WebSocket this module uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  now(): number;
}

export interface ConnectionOptions {
  url: () => string;
  onFrame: (frame: ServerFrame) => void;
  onDecodeError: (error: string) => void;
  onState: (state: ConnState) => void;
  backoff?: Backoff;
  createSocket?: (url: string) => SocketLike;
  timers?: Timers;
  /** Ping period; 0 disables the heartbeat. */
  heartbeatMs?: number;
  /** Silence after which the socket is considered dead. */
  staleMs?: number;
  /**
   * Close codes after which dialling again cannot help (the session's token
   * expired: the same token would be refused), so the connection stops.
   */
  isFinal?: (code: number) => boolean;
}

const OPEN = 1;

const browserTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (h) => globalThis.clearInterval(h as ReturnType<typeof setInterval>),
  now: () => Date.now(),
};

export class Connection {
  private ws: SocketLike | null = null;
  private retry: unknown = null;
  private heartbeat: unknown = null;
  private lastHeard = 0;
  private nonce = 0;
  private stopped = true;
  private readonly backoff: Backoff;
  private readonly timers: Timers;
  private readonly createSocket: (url: string) => SocketLike;

  constructor(private readonly opts: ConnectionOptions) {
    this.backoff = opts.backoff ?? new Backoff();
    this.timers = opts.timers ?? browserTimers;
    this.createSocket = opts.createSocket ?? ((url) => new WebSocket(url));
  }

  get isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === OPEN;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.dial();
    const every = this.opts.heartbeatMs ?? 15_000;
    if (every > 0) this.heartbeat = this.timers.setInterval(() => this.beat(), every);
  }

  stop(): void {
    this.halt();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, 'client stopped');
    this.opts.onState({ state: 'stopped', code: null });
  }

  /**
   * Drops the socket, if any, and dials again at once: the URL (with a new
   * token, say) is read afresh. Starts a stopped connection.
   */
  restart(): void {
    if (this.stopped) {
      this.start();
      return;
    }
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, 'reconnecting');
    this.cancelRetry();
    this.backoff.reset();
    this.dial();
  }

  private halt(): void {
    this.stopped = true;
    this.cancelRetry();
    if (this.heartbeat !== null) this.timers.clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Skips the remaining backoff wait (a "retry now" button). */
  reconnectNow(): void {
    if (this.stopped || this.ws !== null) return;
    this.cancelRetry();
    this.dial();
  }

  /** Sends a frame if the socket is open; returns whether it was handed over. */
  send(frame: ClientFrame): boolean {
    if (this.ws === null || this.ws.readyState !== OPEN) return false;
    this.ws.send(encode(frame));
    return true;
  }

  private dial(): void {
    this.retry = null;
    this.opts.onState({ state: 'connecting', attempt: this.backoff.attempts });
    let ws: SocketLike;
    try {
      ws = this.createSocket(this.opts.url());
    } catch {
      this.scheduleRetry(1006);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.lastHeard = this.timers.now();
      this.opts.onState({ state: 'open' });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = this.timers.now();
      if (typeof ev.data !== 'string') {
        this.opts.onDecodeError('the server sent a binary frame');
        return;
      }
      const result = decode(ev.data);
      if (!result.ok) {
        this.opts.onDecodeError(result.error);
        return;
      }
      if (result.frame.type === 'welcome') this.backoff.reset();
      this.opts.onFrame(result.frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.opts.isFinal?.(ev.code) === true) {
        this.halt();
        this.opts.onState({ state: 'stopped', code: ev.code });
        return;
      }
      this.scheduleRetry(ev.code);
    };
    // An error is always followed by a close event; nothing to do here.
    ws.onerror = () => {};
  }

  private scheduleRetry(code: number): void {
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.opts.onState({
      state: 'waiting',
      retryAt: this.timers.now() + delay,
      attempt: this.backoff.attempts,
      code,
    });
    this.retry = this.timers.setTimeout(() => this.dial(), delay);
  }

  private cancelRetry(): void {
    if (this.retry !== null) this.timers.clearTimeout(this.retry);
    this.retry = null;
  }

  private beat(): void {
    const ws = this.ws;
    if (ws === null || ws.readyState !== OPEN) return;
    const stale = this.opts.staleMs ?? 45_000;
    if (this.timers.now() - this.lastHeard > stale) {
      // Half-open: drop it and let the close handler schedule a redial.
      this.ws = null;
      ws.close(4000, 'no traffic');
      this.scheduleRetry(4000);
      return;
    }
    this.nonce += 1;
    ws.send(encode({ type: 'ping', nonce: this.nonce }));
  }
}
