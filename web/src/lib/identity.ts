/**
 * Who this tab is (issue 16, docs/auth.md): the connect token, and what the
 * server says it makes us.
 *
 * The token arrives in the page's URL fragment (`#token=…`). A fragment is
 * never sent to any server, so the token stays out of access logs on its way
 * in. It is kept in sessionStorage, which is per tab (another tab may speak
 * for another user) and dies with the tab, and it is removed from the address
 * bar at once, so it is neither bookmarked nor shared by copying the URL.
 *
 * A browser cannot read why a WebSocket upgrade was refused (the 401/403 body
 * never reaches the page; the socket just closes), so the client asks
 * `GET /api/identity` with the token first: that answers the same sentence,
 * or who the token makes us, and the mode the server runs in.
 *
 * Plain TypeScript with injected storage and fetch, so Vitest drives it.
 */

/** sessionStorage key of the tab's token. */
export const TOKEN_KEY = 'actorchat.token';

export type AuthMode = 'off' | 'optional' | 'required';

/** A verified user, as `GET /api/identity` describes the token's holder. */
export interface User {
  user_id: string;
  name: string;
  /** Room names and `prefix*` patterns the token grants; null: every room. */
  rooms: string[] | null;
  admin: boolean;
  /** The token's `exp`, seconds since the Unix epoch. */
  expires_at: number;
}

/**
 * What `/api/identity` said:
 * - `known`: the server's mode, and the user (null: a guest);
 * - `refused`: 401 or 403, with the server's sentence saying why;
 * - `unavailable`: no usable answer (server down, an older server without
 *   the route, a 5xx). The client then connects as it always did and lets
 *   the connection's backoff deal with it.
 */
export type IdentityAnswer =
  | { kind: 'known'; auth: AuthMode; user: User | null }
  | { kind: 'refused'; status: number; message: string }
  | { kind: 'unavailable'; message: string };

/**
 * The fragment split into the token (`token=…`, URL-decoded; null when the
 * fragment has no `token=` part) and the rest, which names the room as it
 * always did: `#rust&token=…` is the room `rust` with a token.
 */
export function splitHash(hash: string): { token: string | null; rest: string } {
  const body = hash.replace(/^#/, '');
  let token: string | null = null;
  const rest: string[] = [];
  for (const part of body.split('&')) {
    if (part.startsWith('token=')) token = decode(part.slice('token='.length)).trim();
    else if (part !== '') rest.push(part);
  }
  return { token, rest: rest.join('&') };
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    // Malformed escapes: the server judges the raw text (and says why).
    return s;
  }
}

/** Whether there is a token to present (the server judges the rest, and says why it refuses). */
export function usableToken(token: string | null): token is string {
  return token !== null && token !== '';
}

/**
 * The tab's token. Without sessionStorage (some private modes refuse it) it
 * lives in memory for this page load, which is all a reload then loses.
 */
export class TokenStore {
  private memory: string | null = null;

  constructor(private readonly storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null) {}

  get(): string | null {
    try {
      const stored = this.storage?.getItem(TOKEN_KEY) ?? null;
      if (stored !== null) return stored;
    } catch {
      // Fall through to memory.
    }
    return this.memory;
  }

  set(token: string): void {
    this.memory = token;
    try {
      this.storage?.setItem(TOKEN_KEY, token);
    } catch {
      // Kept in memory only.
    }
  }

  clear(): void {
    this.memory = null;
    try {
      this.storage?.removeItem(TOKEN_KEY);
    } catch {
      // Nothing stored.
    }
  }
}

/** The part of `location` and `history` that `takeToken` touches. */
export interface AddressBar {
  readonly hash: string;
  readonly pathname: string;
  readonly search: string;
  /** `history.replaceState`: changes the address without a navigation or a `hashchange`. */
  replace(url: string): void;
}

/**
 * Takes a `#token=…` out of the address bar (keeping the path, the query and
 * the rest of the fragment) and returns it, or null when there is none. An
 * empty `#token=` is removed too, and returns ''.
 */
export function takeToken(bar: AddressBar): string | null {
  const { token, rest } = splitHash(bar.hash);
  if (token === null) return null;
  bar.replace(`${bar.pathname}${bar.search}${rest === '' ? '' : `#${rest}`}`);
  return token;
}

/** The request headers that present `token` (`/api/identity`, `/rooms/{room}/messages`). */
export function bearer(token: string | null): Record<string, string> {
  return usableToken(token) ? { Authorization: `Bearer ${token}` } : {};
}

/** The part of `fetch` that `askIdentity` uses. */
export type FetchLike = (
  url: string,
  init: { headers: Record<string, string>; cache: 'no-store' },
) => Promise<{ status: number; text(): Promise<string> }>;

export const IDENTITY_PATH = '/api/identity';

/** Asks the server who `token` makes us (a guest without one). Never throws. */
export async function askIdentity(fetchFn: FetchLike, token: string | null): Promise<IdentityAnswer> {
  try {
    const res = await fetchFn(IDENTITY_PATH, { headers: bearer(token), cache: 'no-store' });
    return readIdentity(res.status, await res.text());
  } catch {
    return { kind: 'unavailable', message: 'The server could not be reached.' };
  }
}

/** Longest refusal sentence shown; the server's are one line. */
const MAX_SENTENCE = 300;

/** Reads an answer of `/api/identity` strictly, like the codec reads frames. */
export function readIdentity(status: number, body: string): IdentityAnswer {
  if (status === 401 || status === 403) {
    const sentence = body.trim().slice(0, MAX_SENTENCE);
    return {
      kind: 'refused',
      status,
      message: sentence === '' ? `The server refused the token (HTTP ${status}).` : sentence,
    };
  }
  if (status !== 200) return { kind: 'unavailable', message: `The server answered HTTP ${status}.` };
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    // An older server answers its page for unknown paths: no identities there.
    return { kind: 'unavailable', message: 'The server does not describe identities.' };
  }
  const o = record(v);
  if (o === null) return { kind: 'unavailable', message: 'The identity answer is not an object.' };
  const auth = o.auth;
  if (auth !== 'off' && auth !== 'optional' && auth !== 'required') {
    return { kind: 'unavailable', message: 'The identity answer names no known mode.' };
  }
  if (o.user === null) return { kind: 'known', auth, user: null };
  const user = readUser(o.user);
  if (user === null) return { kind: 'unavailable', message: 'The identity answer has a malformed user.' };
  return { kind: 'known', auth, user };
}

function record(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function readUser(v: unknown): User | null {
  const u = record(v);
  if (u === null) return null;
  const { user_id, name, rooms, admin, expires_at } = u;
  if (typeof user_id !== 'string' || typeof name !== 'string' || typeof admin !== 'boolean') return null;
  if (typeof expires_at !== 'number' || !Number.isInteger(expires_at) || expires_at < 0) return null;
  let granted: string[] | null = null;
  if (rooms !== null) {
    if (!Array.isArray(rooms) || !rooms.every((r: unknown) => typeof r === 'string')) return null;
    granted = rooms as string[];
  }
  return { user_id, name, rooms: granted, admin, expires_at };
}

/** Whether `rooms` (names, `prefix*` patterns, `*`; null: every room) grants `room`, as the server decides. */
export function roomGranted(rooms: readonly string[] | null, room: string): boolean {
  if (rooms === null) return true;
  return rooms.some((p) => (p.endsWith('*') ? room.startsWith(p.slice(0, -1)) : p === room));
}

/**
 * The room to enter when the one asked for is not granted: `fallback` (the
 * default room) if it is, else the first plain name the token lists; null
 * when it lists only patterns (no room can be guessed).
 */
export function grantedRoom(rooms: readonly string[], fallback: string): string | null {
  if (roomGranted(rooms, fallback)) return fallback;
  return rooms.find((p) => !p.endsWith('*')) ?? null;
}

/** How a person gets in: said whenever a token is missing or refused. */
export const HOW_TO_SIGN_IN =
  'To sign in, open this page through the link your application gives you, which ends in #token=….';

/** Said when the server requires a token and the tab has none. */
export const TOKEN_REQUIRED = `This chat is for signed-in users only. ${HOW_TO_SIGN_IN}`;

/** Said when the server closed the session at its token's expiry (close 4001). */
export function expiredLine(expiresAt: number | null): string {
  const when = expiresAt === null ? '' : ` at ${clockTime(expiresAt)}`;
  return `Your session expired${when}, so you are no longer connected. ${HOW_TO_SIGN_IN.replace('To sign in', 'To continue')}`;
}

/** A time of day for `seconds` since the epoch, e.g. "14:05:30". */
export function clockTime(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** How long until `seconds` (since the epoch) from `nowMs`, in words: "in 9 min", "in 40 s", "now". */
export function timeLeft(seconds: number, nowMs: number): string {
  const left = Math.round(seconds - nowMs / 1000);
  if (left <= 0) return 'now';
  if (left < 60) return `in ${left} s`;
  if (left < 3600) return `in ${Math.floor(left / 60)} min`;
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  return m === 0 ? `in ${h} h` : `in ${h} h ${m} min`;
}
