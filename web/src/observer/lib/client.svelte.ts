/**
 * The observer page's connection to the server: one `fetch` of the
 * snapshot stream (Server-Sent Events), reconnecting with backoff, and the
 * actions. The admin token, when the server needs one, is typed once and
 * kept in this tab's session storage; it travels only in the
 * `Authorization` header, never in a URL.
 */
import { Backoff } from '../../lib/backoff';
import { appendPoint } from './history';
import { SseParser } from './sse';
import { parseHello, parseSnapshot, type Access, type Point, type Snapshot } from './snapshot';

export const TOKEN_KEY = 'actorchat.observer-token';
export const STREAM_PATH = '/api/observer/stream';
/** No snapshot for this long: the stream is stale, reconnect. */
const STALE_MS = 5_000;

export type StreamState = 'connecting' | 'open' | 'need_token' | 'refused' | 'retrying';

export interface MemberRow {
  session: number;
  name: string;
  /** The verified user id (`--auth`), null for a guest. */
  user_id: string | null;
  queued: number;
}

export interface ActionResult {
  ok: boolean;
  message: string;
}

export class ObserverClient {
  state = $state<StreamState>('connecting');
  /** Why the stream is not open, for the page. */
  problem = $state('');
  access = $state<Access | null>(null);
  tokenSet = $state(false);
  snapshot = $state.raw<Snapshot | null>(null);
  history = $state.raw<Point[]>([]);
  private token: string | null;
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private readonly backoff = new Backoff({ baseMs: 500, maxMs: 5_000 });

  constructor(private readonly storage: Storage | null) {
    this.token = storage?.getItem(TOKEN_KEY) ?? null;
  }

  get hasToken(): boolean {
    return this.token !== null;
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    if (this.timer !== null) clearTimeout(this.timer);
  }

  setToken(token: string): void {
    this.token = token.trim();
    this.storage?.setItem(TOKEN_KEY, this.token);
    this.abort?.abort();
    this.start();
  }

  forgetToken(): void {
    this.token = null;
    this.storage?.removeItem(TOKEN_KEY);
    this.abort?.abort();
    this.start();
  }

  private headers(): HeadersInit {
    return this.token === null ? {} : { Authorization: `Bearer ${this.token}` };
  }

  private retry(): void {
    if (this.stopped) return;
    this.state = 'retrying';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), this.backoff.next());
  }

  private async connect(): Promise<void> {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.state = 'connecting';
    let response: Response;
    try {
      response = await fetch(STREAM_PATH, { headers: this.headers(), signal: abort.signal, cache: 'no-store' });
    } catch {
      if (!abort.signal.aborted) {
        this.problem = 'The server is not answering.';
        this.retry();
      }
      return;
    }
    if (response.status === 401 || response.status === 403) {
      this.problem = await messageOf(response);
      this.state = response.status === 401 ? 'need_token' : 'refused';
      return;
    }
    if (!response.ok || response.body === null) {
      this.problem = `The stream answered ${response.status}.`;
      this.retry();
      return;
    }
    await this.read(response.body, abort);
  }

  private async read(body: ReadableStream<Uint8Array>, abort: AbortController): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    let stale: ReturnType<typeof setTimeout> | null = null;
    const fresh = (): void => {
      if (stale !== null) clearTimeout(stale);
      stale = setTimeout(() => abort.abort(), STALE_MS);
    };
    fresh();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const e of parser.push(decoder.decode(value, { stream: true }))) {
          this.onEvent(e.event, e.data);
          fresh();
        }
      }
    } catch {
      // Aborted or cut: reconnect below (unless stopped).
    } finally {
      if (stale !== null) clearTimeout(stale);
    }
    if (abort === this.abort || !abort.signal.aborted) {
      this.problem = 'The stream ended; reconnecting.';
      this.retry();
    }
  }

  private onEvent(event: string, data: string): void {
    try {
      if (event === 'hello') {
        const hello = parseHello(data);
        if (hello === null) return;
        this.access = hello.access;
        this.tokenSet = hello.token_set;
        this.history = hello.history;
        this.state = 'open';
        this.problem = '';
        this.backoff.reset();
      } else if (event === 'snapshot') {
        const snapshot = parseSnapshot(data);
        if (snapshot === null) return;
        this.snapshot = snapshot;
        this.history = appendPoint(this.history, snapshot.point);
      }
    } catch {
      // A malformed event is skipped; the next one replaces it.
    }
  }

  /** POSTs an action under /api/observer/. */
  async act(path: string): Promise<ActionResult> {
    try {
      const response = await fetch(`/api/observer/${path}`, { method: 'POST', headers: this.headers() });
      return { ok: response.ok, message: await messageOf(response) };
    } catch {
      return { ok: false, message: 'The server is not answering.' };
    }
  }

  /** Up to 100 members of one room, asked on demand. */
  async members(room: string): Promise<MemberRow[] | string> {
    try {
      const response = await fetch(`/api/observer/rooms/${encodeURIComponent(room)}/members`, {
        headers: this.headers(),
      });
      if (!response.ok) return await messageOf(response);
      const rows: unknown = await response.json();
      return Array.isArray(rows) ? (rows as MemberRow[]) : 'Unexpected answer.';
    } catch {
      return 'The server is not answering.';
    }
  }
}

async function messageOf(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (typeof body === 'object' && body !== null && 'message' in body && typeof body.message === 'string') {
      return body.message;
    }
  } catch {
    // Not JSON.
  }
  return `HTTP ${response.status}`;
}
