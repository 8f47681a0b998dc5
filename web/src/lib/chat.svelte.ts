/**
 * The client's state and the policies that tie the plain modules together:
 * what happens on each server frame, on send, on rename and room switch, and
 * the auto-send loop. Components read the `$state` fields and call methods;
 * they hold no protocol logic of their own.
 *
 * Auto-send and the rate limit: the server allows `max_messages_per_sec`
 * (20/s, burst 40) per connection. The slider goes down to 0 ms, but the loop
 * never sends faster than that limit (0 ms means "as fast as the server
 * allows", i.e. every 50 ms), so it measures the server instead of collecting
 * `rate_limited` errors. Manual sends on top of it can still hit the limit;
 * those errors show as one folded notice with a count.
 *
 * Joining: the URL hash is the one trigger (the switcher only changes it),
 * and `join` ignores a room already joined or already asked for, so a room
 * switch sends exactly one `join` (the server also ignores a join to the
 * current room). "Already asked for" means the room the server will put us
 * in once every join sent so far is answered (`requestedRoom`), not the room
 * of the last welcome: switching A→B→A before B's welcome must send a join
 * back to A. The server answers joins in order, one welcome each, so a
 * welcome that arrives while later joins are still in flight is an
 * intermediate step: it updates the room shown but not the room wanted nor
 * the URL hash. Once the last welcome is in, a room asked for meanwhile
 * (e.g. before the connection's first welcome) is joined then.
 *
 * Identity: a name set by hand is remembered in localStorage; otherwise the
 * name the server gave this tab (e.g. "guest-10") is offered back on every
 * reconnect, so a server restart does not silently rename a guest.
 *
 * Offline: messages written while disconnected are queued (visibly, at most
 * `MAX_QUEUED`) and sent once the next welcome arrives; auto-send pauses.
 * The queue drains at the welcome's `max_messages_per_sec`, one message per
 * `minIntervalMs`, not all at once: the server's token bucket (burst 40 by
 * default) is smaller than a full queue and would refuse the rest as
 * `rate_limited`. Pacing at the sustained rate never exceeds any burst, and
 * the client is not told the burst. Until the queue is empty, new messages
 * join its end, so they still go out in the order they were written.
 *
 * History (issue 11, see `history.ts`): a welcome brings the room's recent
 * messages, shown as earlier messages. A reconnect offers back the newest id
 * it has (`?since=&epoch=`); when the server recovers, the missed messages
 * are appended in order, and when it cannot, the list is replaced by the
 * fresh history and the user is told it could not be recovered. A welcome
 * nobody asked for (the server restarted the room) is merged by id the same
 * way. A join to
 * another room starts from that room's welcome. Scrolling to the top asks
 * for older pages until the server says there are none. Statistics (sent,
 * received, RTT) count only live frames: a replayed echo of an own message
 * confirms it but measures nothing.
 *
 * Sign-in (issue 16, see `identity.ts` and docs/auth.md): with an identity
 * environment, `start` first asks `/api/identity` with the tab's token and
 * connects only if that can work: a refused token, or no token where the
 * server requires one, is said plainly (`halt`) instead of redialling into
 * a 401 the browser cannot read. Every connection presents the newest token.
 * A dial that fails before its welcome asks again, so a token that expired
 * while the connection was down stops the redialling too. A close 4001 (the
 * token expired) stops the connection for good: the same token would be
 * refused. A new token while connected as the same user is taken in-band
 * (`refresh`); for a guest or another user the connection starts again with
 * it. `forbidden` answers a join or a refresh, whichever was sent first of
 * those still unanswered (`answers`): the server answers each session's
 * frames in order.
 */
import { Announcer } from './announce';
import { encode } from './codec';
import { Connection, type ConnState, type SocketLike } from './connection';
import { ScrollBack, StreamPosition, welcomeAtStart } from './history';
import { MessageStore, type Entry } from './messages';
import { NoticeList, type Notice } from './notices';
import { Participants } from './participants';
import { PresenceBuffer } from './presence';
import type { ChatMessage } from './protocol/ChatMessage';
import type { ClientFrame } from './protocol/ClientFrame';
import type { ErrorFrame } from './protocol/ErrorFrame';
import type { HistoryPage } from './protocol/HistoryPage';
import type { Limits } from './protocol/Limits';
import type { RoomUpdate } from './protocol/RoomUpdate';
import type { ServerFrame } from './protocol/ServerFrame';
import type { Since } from './protocol/Since';
import type { Welcome } from './protocol/Welcome';
import { RttWindow } from './rtt';
import {
  clockTime,
  expiredLine,
  grantedRoom,
  HOW_TO_SIGN_IN,
  roomGranted,
  TOKEN_REQUIRED,
  usableToken,
  type AuthMode,
  type IdentityAnswer,
  type TokenStore,
  type User,
} from './identity';
import type { Refreshed } from './protocol/Refreshed';
import { describeError, disconnectedLine, notRecoveredLine } from './status';
import { checkName, DEFAULT_ROOM, isValidRoom, ROOM_RULE } from './validate';

export const DEFAULT_LIMITS: Limits = {
  max_text_chars: 4000,
  max_frame_bytes: 16384,
  max_messages_per_sec: 20,
};
export const RTT_AVERAGE_OVER = 200;
export const RTT_CHART_POINTS = 50;
/** Messages that may wait for the connection; more would only pile up. */
export const MAX_QUEUED = 50;
/** Presence lines are written at most once per this interval: a storm of updates becomes one line. */
export const PRESENCE_FLUSH_MS = 1000;
const NAME_KEY = 'actorchat.name';
/** The server closes a session whose token expired with this code (docs/protocol.md). */
export const TOKEN_EXPIRED = 4001;

/** Why the app does not connect, shown until a new token arrives. */
export interface Halt {
  /** `refused`: the token (or its absence) was refused; `expired`: close 4001; `no_room`: the token grants no room by name. */
  kind: 'refused' | 'expired' | 'no_room';
  message: string;
}

/** Sign-in: the tab's token and the server's `/api/identity` (see `identity.ts`). */
export interface IdentityEnv {
  tokens: TokenStore;
  ask: (token: string | null) => Promise<IdentityAnswer>;
}

/** A request the server may answer with `forbidden`, in the order sent (see the module doc). */
type Forbiddable = { kind: 'join'; room: string } | { kind: 'refresh' };

/**
 * The top of the list: older messages can be loaded (`more`), are being
 * loaded, the list reaches the room's first message (`start`), or the list
 * holds as many rows as it keeps (`full`).
 */
export type OlderState = 'more' | 'loading' | 'start' | 'full';

export interface ChatEnv {
  /** Base for the WebSocket URL, e.g. `ws://localhost:3000`. */
  wsBase: string;
  storage: Pick<Storage, 'getItem' | 'setItem'> | null;
  /** Monotonic clock for round trips. */
  perfNow: () => number;
  wallNow: () => number;
  createSocket?: (url: string) => SocketLike;
  /** Called when the room changes, to mirror it in the URL hash. */
  onRoom?: (room: string) => void;
  /** Sign-in; absent, the app connects at once without a token (as before identities). */
  identity?: IdentityEnv;
}

export class ChatApp {
  conn = $state<ConnState>({ state: 'connecting', attempt: 0 });
  /** The session name (optimistic after a rename until the server refuses). */
  name = $state('');
  room = $state(DEFAULT_ROOM);
  limits = $state<Limits>(DEFAULT_LIMITS);
  participants = $state.raw<string[]>([]);
  participantCount = $state(0);
  unnamedParticipants = $state(0);
  sent = $state(0);
  received = $state(0);
  rttAverage = $state<number | null>(null);
  rttRecent = $state.raw<number[]>([]);
  messages = $state.raw<readonly Entry[]>([]);
  notices = $state.raw<readonly Notice[]>([]);
  /** The composer's text; auto-send keeps sending it. */
  draft = $state('');
  autoRunning = $state(false);
  autoIntervalMs = $state(50);
  /** A clock for countdowns, ticking while the app runs. */
  now = $state(0);
  /** Messages waiting for the connection. */
  queued = $state(0);
  /** The latest sentence for screen readers (a polite live region shows it). */
  announcement = $state('');
  /** Chat messages from others that arrived while the tab was in the background. */
  unread = $state(0);
  /** What the top of the message list offers (scroll-back). */
  older = $state<OlderState>('more');
  /** The server's sign-in mode from `/api/identity`; null until known (or a server that does not say). */
  auth = $state<AuthMode | null>(null);
  /** Who the token makes this tab (`/api/identity`, then each refresh); null for a guest. */
  user = $state<User | null>(null);
  /** The connected session's verified user id (its welcome's); null for a guest. */
  userId = $state<string | null>(null);
  /** Why the app stopped connecting, or null. */
  halt = $state<Halt | null>(null);

  readonly clientPrefix: string;
  private readonly store = new MessageStore();
  private readonly position = new StreamPosition();
  private readonly scrollBack = new ScrollBack();
  /** The resume point the current connection's URL offered (answered by its first welcome). */
  private askedSince: Since | null = null;
  private readonly rtt = new RttWindow(RTT_AVERAGE_OVER);
  private readonly presence = new PresenceBuffer();
  private readonly announcer = new Announcer();
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  /** The name the server gave this tab, offered back on reconnect. */
  private givenName: string | null = null;
  /** The server announces our own join and rename too; those are not news. */
  private ownJoinPending: string | null = null;
  private ownRenamePending: { from: string; to: string } | null = null;
  private background = false;
  private everWelcomed = false;
  private readonly people = new Participants();
  private readonly noticeList = new NoticeList();
  private readonly connection: Connection;
  private seq = 0;
  /** The room asked for (URL hash or switcher); `room` is the one joined. */
  private wantedRoom: string;
  /** The room of the connection URL or of the last join sent (see the module doc). */
  private requestedRoom: string;
  /** Joins sent on this connection and not yet answered by a welcome. */
  private joinsInFlight = 0;
  private nameBeforeRename: string | null = null;
  /** Reactive: the composer shows offline hints until the welcome arrives. */
  private welcomed = $state(false);
  private wasOpen = false;
  private flushQueued = false;
  private autoTimer: ReturnType<typeof setTimeout> | null = null;
  /** Sends the next queued message when it fires (see the module doc). */
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  private clockTimer: ReturnType<typeof setInterval> | null = null;
  /** Between `start` and `stop`: an identity answer arriving after `stop` starts nothing. */
  private running = false;
  /** A `/api/identity` request after a failed dial is in flight. */
  private rechecking = false;
  /** Joins and refreshes sent on this connection that `forbidden` may answer, oldest first. */
  private answers: Forbiddable[] = [];
  /** The token of the refresh in flight, and who `/api/identity` said it makes us (null: not asked). */
  private refreshing: { token: string; user: User | null } | null = null;

  constructor(
    private readonly env: ChatEnv,
    room: string = DEFAULT_ROOM,
  ) {
    this.wantedRoom = room;
    this.requestedRoom = room;
    this.room = room;
    this.name = this.storedName() ?? '';
    this.clientPrefix = `t${Math.floor(Math.random() * 36 ** 6).toString(36)}`;
    this.connection = new Connection({
      url: () => this.url(),
      onFrame: (f) => this.onFrame(f),
      onDecodeError: (e) => this.notice('decode', `Could not read a frame from the server: ${e}`),
      onState: (s) => this.onConnState(s),
      isFinal: (code) => code === TOKEN_EXPIRED,
      ...(env.createSocket ? { createSocket: env.createSocket } : {}),
    });
  }

  start(): void {
    this.now = this.env.wallNow();
    this.clockTimer = setInterval(() => this.tick(), 250);
    this.running = true;
    if (this.env.identity === undefined) {
      this.connection.start();
      return;
    }
    void this.identify();
  }

  /** Whether the server runs with sign-in, so messages carry verified badges and guest marks. */
  get identities(): boolean {
    return (this.auth !== null && this.auth !== 'off') || this.userId !== null;
  }

  /** When the session ends (its token's `exp`, seconds since the epoch), or null when unknown or a guest. */
  get expiresAt(): number | null {
    return this.user?.expires_at ?? null;
  }

  /** Asks who the tab's token makes it, then connects if that can work. */
  private async identify(): Promise<void> {
    const identity = this.env.identity;
    if (identity === undefined) return;
    const token = this.token();
    const answer = await identity.ask(token);
    if (!this.running) return;
    if (this.judge(answer, token)) this.connection.start();
    else this.conn = { state: 'stopped', code: null };
  }

  /**
   * Takes an identity answer in: the mode, the user, and whether connecting
   * can work. When not, `halt` says why. A room the token does not grant is
   * swapped for one it does (and the user told), since connecting to it
   * would be refused with a 403 the browser cannot read.
   */
  private judge(answer: IdentityAnswer, token: string | null): boolean {
    if (answer.kind === 'unavailable') return true;
    if (answer.kind === 'refused') {
      this.halt = {
        kind: 'refused',
        message: token === null ? TOKEN_REQUIRED : `${answer.message} ${HOW_TO_SIGN_IN}`,
      };
      return false;
    }
    this.auth = answer.auth;
    this.user = answer.user;
    const rooms = answer.user?.rooms ?? null;
    if (rooms === null || roomGranted(rooms, this.wantedRoom)) return true;
    const other = grantedRoom(rooms, DEFAULT_ROOM);
    if (other === null) {
      this.halt = {
        kind: 'no_room',
        message: `Your sign-in does not grant #${this.wantedRoom}; it grants ${rooms.length === 0 ? 'no room' : rooms.join(', ')}. Put a room it grants after the # in the address.`,
      };
      return false;
    }
    this.notice('info', `Your sign-in does not grant #${this.wantedRoom}, so you are in #${other} instead.`, 'forbidden');
    this.wantedRoom = other;
    this.requestedRoom = other;
    this.room = other;
    this.env.onRoom?.(other);
    return true;
  }

  /** The token to present: the tab's, unless the server is known to ignore tokens. */
  private token(): string | null {
    if (this.auth === 'off') return null;
    const t = this.env.identity?.tokens.get() ?? null;
    return usableToken(t) ? t : null;
  }

  /**
   * A new token arrived (the page's fragment changed to `#token=…`). Asked
   * about first, so a refused one is said at once and the current session
   * goes on. The same user, connected: extended in-band with `refresh`.
   * Otherwise (a guest signing in, another user, or a session that ended)
   * it becomes the tab's token and the connection starts again with it.
   */
  async offerToken(token: string): Promise<void> {
    const identity = this.env.identity;
    if (identity === undefined || !usableToken(token)) return;
    const answer = await identity.ask(token);
    if (!this.running) return;
    if (answer.kind === 'refused') {
      const still = this.halt === null && this.expiresAt !== null ? ` Your session goes on until ${clockTime(this.expiresAt)}.` : '';
      this.notice('error', `The new token was not accepted: ${answer.message}${still}`, 'token_refused');
      return;
    }
    if (answer.kind === 'known' && answer.auth === 'off') {
      this.auth = 'off';
      this.notice('info', 'This server does not use sign-in, so the new token changes nothing.', 'auth_off');
      return;
    }
    const user = answer.kind === 'known' ? answer.user : null;
    const sameUser = this.userId !== null && (user === null || user.user_id === this.userId);
    if (this.connected && sameUser && this.sendRefresh(token, user)) return;
    identity.tokens.set(token);
    this.refreshing = null;
    this.halt = null;
    if (!this.judge(answer, token)) {
      this.connection.stop();
      return;
    }
    this.connection.restart();
  }

  /** Sends a `refresh`; whether it went out. */
  private sendRefresh(token: string, user: User | null): boolean {
    if (!this.connection.send({ type: 'refresh', token })) return false;
    this.refreshing = { token, user };
    this.answers.push({ kind: 'refresh' });
    return true;
  }

  private onRefreshed(r: Refreshed): void {
    this.settle('refresh');
    const done = this.refreshing;
    this.refreshing = null;
    if (done !== null) this.env.identity?.tokens.set(done.token);
    // The new token's rooms and admin apply now; the name stays until the next connection.
    const base = done?.user ?? this.user;
    if (base !== null) this.user = { ...base, name: this.user?.name ?? base.name, expires_at: r.expires_at };
    this.notice('info', `Your session was extended until ${clockTime(r.expires_at)}.`, 'refreshed');
  }

  /**
   * A refused refresh (`invalid_token` or `forbidden`): the session goes on
   * with its current token until that expires. Its own notice code, so it
   * never folds into a refused join's.
   */
  private refreshRefused(message: string): void {
    this.refreshing = null;
    const until = this.expiresAt === null ? '' : ` Your session still ends at ${clockTime(this.expiresAt)}.`;
    this.notice('error', `Your session could not be extended: ${message}${until}`, 'refresh_refused');
  }

  /** Forgets the oldest unanswered request of this kind (it was answered). */
  private settle(kind: Forbiddable['kind']): void {
    const i = this.answers.findIndex((a) => a.kind === kind);
    if (i >= 0) this.answers.splice(i, 1);
  }

  /**
   * A dial failed before its welcome: if the token is what the server
   * refuses (it expired meanwhile, say), stop redialling and say why.
   * One request per failed dial at most, and the dials are backed off.
   */
  private async recheck(): Promise<void> {
    const identity = this.env.identity;
    if (identity === undefined || this.rechecking) return;
    this.rechecking = true;
    const token = this.token();
    try {
      const answer = await identity.ask(token);
      if (!this.running || this.connected || token !== this.token()) return;
      if (!this.judge(answer, token)) this.connection.stop();
    } finally {
      this.rechecking = false;
    }
  }

  stop(): void {
    this.running = false;
    this.stopAuto();
    this.stopDrain();
    if (this.clockTimer !== null) clearInterval(this.clockTimer);
    this.clockTimer = null;
    if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    this.connection.stop();
  }

  get connected(): boolean {
    return this.conn.state === 'open' && this.welcomed;
  }

  /** The auto-send period actually used: the slider value, floored at the server's rate. */
  get effectiveIntervalMs(): number {
    return Math.max(this.autoIntervalMs, this.minIntervalMs);
  }

  get minIntervalMs(): number {
    const rate = this.limits.max_messages_per_sec;
    return rate > 0 ? Math.ceil(1000 / rate) : 0;
  }

  /** Why `text` cannot be sent now, or null when it can. */
  sendBlocker(text: string): string | null {
    const t = text.trim();
    if (t.length === 0) return 'Type a message first.';
    if (t.length > this.limits.max_text_chars) {
      return `At most ${this.limits.max_text_chars} characters.`;
    }
    if (this.halt !== null) return this.halt.message;
    if (this.store.queuedCount >= MAX_QUEUED) {
      return `${MAX_QUEUED} messages already wait to be sent.`;
    }
    return null;
  }

  /**
   * Sends a chat message; it shows at once as pending, or as queued while
   * offline. Returns whether it was accepted (sent or queued).
   */
  send(text: string): boolean {
    if (this.sendBlocker(text) !== null) return false;
    const body = text.trim();
    if (this.frameTooLarge(body)) {
      this.notice('info', `That message is over the server's ${this.limits.max_frame_bytes}-byte frame limit.`);
      return false;
    }
    if (!this.connected || this.store.queuedCount > 0) {
      this.store.addQueued(this.name, body, this.env.wallNow(), this.userId);
      this.queued = this.store.queuedCount;
      this.queueFlush();
      return true;
    }
    const clientId = this.transmit(body);
    if (clientId === null) return false;
    this.store.addPending(clientId, this.name, body, this.env.perfNow(), this.env.wallNow(), this.userId);
    this.queueFlush();
    return true;
  }

  /** Sends a failed message again. */
  retry(key: number): boolean {
    const text = this.store.failedText(key);
    if (text === null || !this.connected) return false;
    const clientId = this.transmit(text);
    if (clientId === null) return false;
    this.store.retry(key, clientId, this.env.perfNow());
    this.queueFlush();
    return true;
  }

  /** Whether the message list may trim rows above the reader (false while scrolled up). */
  holdTrim(hold: boolean): void {
    this.store.setHold(hold);
    if (!hold) this.queueFlush();
  }

  /**
   * Asks for the page of messages before the oldest shown (scroll-back).
   * Returns whether a request went out: not while one is in flight, a room
   * switch is under way, the list reaches the room's start or is full.
   */
  loadOlder(): boolean {
    if (!this.connected || this.joinsInFlight > 0 || this.store.atStart) return false;
    const req = this.scrollBack.request(
      this.room,
      this.store.oldestId,
      this.position.lastId,
      this.store.space,
      this.env.perfNow(),
    );
    if (req === null) return false;
    if (!this.connection.send({ type: 'history', before: req.before, limit: req.limit })) {
      this.scrollBack.cancel();
      return false;
    }
    this.queueFlush();
    return true;
  }

  /** The tab went to the background or came back (unread count for the title). */
  setBackground(background: boolean): void {
    this.background = background;
    if (!background) this.unread = 0;
  }

  /** Puts one chat frame on the wire; its client_id, or null when the socket refused. */
  private transmit(body: string): string | null {
    const clientId = `${this.clientPrefix}-${++this.seq}`;
    const frame: ClientFrame = { type: 'chat', text: body, client_id: clientId, sent_at: this.env.wallNow() };
    if (!this.connection.send(frame)) return null;
    this.sent += 1;
    return clientId;
  }

  /**
   * The server closes the connection (1009) on frames over the byte limit,
   * which escaped control characters can reach within the character limit.
   */
  private frameTooLarge(body: string): boolean {
    const clientId = `${this.clientPrefix}-${this.seq + 1}`;
    const frame: ClientFrame = { type: 'chat', text: body, client_id: clientId, sent_at: this.env.wallNow() };
    return new TextEncoder().encode(encode(frame)).length > this.limits.max_frame_bytes;
  }

  /** Renames the session; remembered in localStorage. Returns an error sentence or null. */
  rename(raw: string): string | null {
    // The server refuses it (`invalid_name`): a verified user's name is its token's.
    if (this.userId !== null) return 'Your name comes from your sign-in and cannot be changed here.';
    const checked = checkName(raw);
    if (!checked.ok) return checked.error;
    const name = checked.name;
    this.env.storage?.setItem(NAME_KEY, name);
    if (name === this.name) return null;
    if (this.connected) {
      this.nameBeforeRename = this.name;
      this.ownRenamePending = { from: this.name, to: name };
      this.connection.send({ type: 'set_name', name });
    }
    // Optimistic; reverted if the server answers invalid_name. When offline,
    // the next connection carries the new name in its URL.
    this.name = name;
    this.store.system(`You are now ${name}.`, this.env.wallNow());
    this.queueFlush();
    return null;
  }

  /** Switches rooms (answered by a new welcome). Returns an error sentence or null. */
  join(room: string): string | null {
    if (!isValidRoom(room)) {
      return ROOM_RULE;
    }
    // Already there, or already asked for: a second join would only make
    // the server leave and re-enter the room.
    if (room === this.wantedRoom) return null;
    this.wantedRoom = room;
    this.requestWanted();
    return null;
  }

  /** Sends a join for the wanted room unless the joins already sent lead there. */
  private requestWanted(): void {
    if (!this.connected || this.wantedRoom === this.requestedRoom) return;
    if (!this.connection.send({ type: 'join', room: this.wantedRoom })) return;
    this.answers.push({ kind: 'join', room: this.wantedRoom });
    this.requestedRoom = this.wantedRoom;
    this.joinsInFlight += 1;
  }

  startAuto(): void {
    if (this.autoRunning) return;
    this.autoRunning = true;
    const tick = (): void => {
      if (!this.autoRunning) return;
      // Paused while offline and while the queue drains: queueing a message
      // every 50 ms helps nobody.
      if (this.connected && this.store.queuedCount === 0) this.send(this.draft);
      this.autoTimer = setTimeout(tick, this.effectiveIntervalMs);
    };
    tick();
  }

  stopAuto(): void {
    this.autoRunning = false;
    if (this.autoTimer !== null) clearTimeout(this.autoTimer);
    this.autoTimer = null;
  }

  reconnectNow(): void {
    this.connection.reconnectNow();
  }

  dismissNotice(id: number): void {
    this.noticeList.dismiss(id);
    this.notices = this.noticeList.items;
  }

  /** Copies the stores into reactive state now (tests; normally once per frame). */
  flush(): void {
    this.flushQueued = false;
    this.messages = this.store.items.slice();
    this.queued = this.store.queuedCount;
    this.rttAverage = this.rtt.average;
    this.rttRecent = this.rtt.last(RTT_CHART_POINTS);
    this.older = this.olderState();
  }

  private olderState(): OlderState {
    if (this.store.atStart) return 'start';
    if (this.scrollBack.loading(this.env.perfNow())) return 'loading';
    return this.store.space < 1 ? 'full' : 'more';
  }

  private url(): string {
    // A new connection: its welcome answers the URL, earlier joins are void.
    this.requestedRoom = this.wantedRoom;
    this.joinsInFlight = 0;
    this.answers = [];
    // A refresh the old connection never answered: its token was checked
    // (`/api/identity` named this user), so the new connection presents it.
    const unanswered = this.refreshing;
    this.refreshing = null;
    if (unanswered?.user != null) {
      this.env.identity?.tokens.set(unanswered.token);
      this.user = unanswered.user;
    }
    const q = new URLSearchParams({ room: this.wantedRoom });
    const name = this.storedName() ?? this.givenName;
    if (name !== null) q.set('name', name);
    // Back into the room whose list we hold: resume after the newest id shown.
    this.askedSince = this.position.since(this.wantedRoom);
    if (this.askedSince !== null) {
      q.set('since', String(this.askedSince.id));
      q.set('epoch', this.askedSince.epoch);
    }
    const token = this.token();
    if (token !== null) q.set('token', token);
    return `${this.env.wsBase}/ws?${q.toString()}`;
  }

  private storedName(): string | null {
    try {
      const n = this.env.storage?.getItem(NAME_KEY) ?? null;
      return n !== null && checkName(n).ok ? n : null;
    } catch {
      return null;
    }
  }

  private onConnState(s: ConnState): void {
    this.conn = s;
    if (s.state === 'open') return;
    const welcomedBefore = this.welcomed;
    this.welcomed = false;
    this.stopDrain();
    this.scrollBack.cancel();
    if (s.state === 'stopped' && s.code === TOKEN_EXPIRED) {
      this.wasOpen = false;
      this.halt = { kind: 'expired', message: expiredLine(this.expiresAt) };
      this.store.system(this.halt.message, this.env.wallNow());
      this.queueFlush();
      return;
    }
    if (this.wasOpen && s.state === 'waiting') {
      this.wasOpen = false;
      this.store.system(disconnectedLine(s.code), this.env.wallNow());
      this.queueFlush();
    }
    // Closed before any welcome: perhaps refused (a 401 or 403 the browser cannot read).
    if (s.state === 'waiting' && !welcomedBefore) void this.recheck();
  }

  private onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        return this.onWelcome(frame);
      case 'chat':
        return this.onChat(frame);
      case 'room_update':
        return this.onRoomUpdate(frame);
      case 'error':
        return this.onError(frame);
      case 'history':
        return this.onHistory(frame);
      case 'refreshed':
        return this.onRefreshed(frame);
      case 'pong':
        return;
    }
  }

  private onWelcome(w: Welcome): void {
    const reconnect = this.everWelcomed && this.room === w.room;
    this.everWelcomed = true;
    // Before the history is read: own messages are told by it.
    this.userId = w.user_id;
    // Only the connection's first welcome answers its URL; later ones answer joins.
    const asked = this.askedSince;
    this.askedSince = null;
    const { verdict, after, epochChanged } = this.position.welcome(w, asked);
    const history = w.history;
    const isOwn = (m: ChatMessage): boolean => this.isOwn(m);
    let line = reconnect ? `Reconnected to #${w.room} as ${w.name}.` : `You are in #${w.room} as ${w.name}.`;
    this.scrollBack.cancel();
    switch (verdict) {
      case 'fresh':
      case 'stale':
        // Own messages still waiting stay (a stale list is the same room).
        this.store.clear(verdict === 'stale');
        this.store.replay(history, isOwn, 'earlier');
        if (welcomeAtStart(w)) this.store.markStart();
        if (verdict === 'stale') {
          line = `${line} ${notRecoveredLine(epochChanged)}`;
          this.notice('info', notRecoveredLine(epochChanged), 'not_recovered');
        } else if (history.length > 0) {
          line = `${line} Earlier messages are above.`;
        }
        break;
      case 'recovered': {
        const news = history.filter((m) => m.id > after);
        const missed = this.store.replay(news, isOwn, 'missed');
        if (this.background) this.unread += news.filter((m) => !isOwn(m)).length;
        if (missed > 0) {
          line = `${line} ${missed === 1 ? '1 message was' : `${missed.toLocaleString('en-US')} messages were`} sent while you were away.`;
        }
        break;
      }
      case 'unknown':
        this.store.forgetIds();
        this.store.replay(history, isOwn, 'earlier');
        if (welcomeAtStart(w)) this.store.markStart();
        break;
    }
    this.welcomed = true;
    this.wasOpen = true;
    this.room = w.room;
    if (this.joinsInFlight > 0) {
      this.joinsInFlight -= 1;
      this.settle('join');
    }
    const settled = this.joinsInFlight === 0;
    if (settled) this.requestedRoom = w.room;
    this.name = w.name;
    this.givenName = w.name;
    this.nameBeforeRename = null;
    this.ownRenamePending = null;
    this.ownJoinPending = w.name;
    this.limits = w.limits;
    this.people.reset(w);
    this.syncPeople();
    // Statistics describe this connection in this room: they start again.
    this.sent = 0;
    this.received = 0;
    this.rtt.clear();
    this.presence.take();
    this.store.system(line, this.env.wallNow());
    if (settled && w.room === this.wantedRoom) this.env.onRoom?.(w.room);
    // Asked for another room before this welcome came: go there now.
    if (settled) this.requestWanted();
    this.stopDrain();
    this.drain();
    this.queueFlush();
  }

  /**
   * Sends the oldest queued message and schedules the next one
   * `minIntervalMs` later (all at once when the server sets no rate).
   * Stops when the queue is empty, the socket refuses, or the connection
   * goes (`onConnState`); the next welcome starts it again.
   */
  private drain(): void {
    this.drainTimer = null;
    if (!this.connected) return;
    const interval = this.minIntervalMs;
    const sent = this.store.sendQueued((text) => this.transmit(text), this.env.perfNow(), interval > 0 ? 1 : Infinity);
    this.queued = this.store.queuedCount;
    this.queueFlush();
    if (sent > 0 && this.store.queuedCount > 0) {
      this.drainTimer = setTimeout(() => this.drain(), interval);
    }
  }

  private stopDrain(): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }

  /**
   * Written by us: when both sides are verified, by this user (from any tab
   * or device; a guest may share the name, never the id); otherwise sent
   * from this tab, whose client_ids carry its prefix.
   */
  private isOwn(m: ChatMessage): boolean {
    if (this.userId !== null && m.user_id != null) return m.user_id === this.userId;
    return m.client_id !== null && m.client_id.startsWith(`${this.clientPrefix}-`);
  }

  private onChat(m: ChatMessage): void {
    // Already shown (it came in a welcome's history): never twice.
    if (!this.position.live(m)) return;
    this.received += 1;
    const own = this.isOwn(m);
    const { rtt } = this.store.receive(m, own, this.env.perfNow());
    if (rtt !== null) this.rtt.add(rtt);
    if (!own) {
      this.announcer.offer(m.author, m.text);
      if (this.background) this.unread += 1;
    }
    this.queueFlush();
  }

  private onHistory(page: HistoryPage): void {
    const answer = this.scrollBack.answer(page);
    if (answer === null || answer.room !== this.room) return;
    const added = this.store.prepend(answer.messages, (m) => this.isOwn(m));
    if (!answer.has_more && added === answer.messages.length) this.store.markStart();
    this.queueFlush();
  }

  private onRoomUpdate(u: RoomUpdate): void {
    if (u.room !== this.room) return;
    this.people.apply(u);
    this.syncPeople();
    this.presence.add({
      joined: this.withoutOwn(u.joined),
      left: u.left,
      renamed: u.renamed.filter((r) => {
        const mine = this.ownRenamePending;
        if (mine === null || r.from !== mine.from || r.to !== mine.to) return true;
        this.ownRenamePending = null;
        return false;
      }),
    });
    // Throttled with a leading edge: the first change shows at once (in its
    // place among the messages), later ones are gathered for a second.
    if (!this.presence.empty && this.presenceTimer === null) {
      this.writePresence();
      this.presenceTimer = setTimeout(() => this.presenceTick(), PRESENCE_FLUSH_MS);
    }
  }

  private presenceTick(): void {
    this.presenceTimer = null;
    if (this.presence.empty) return;
    this.writePresence();
    this.presenceTimer = setTimeout(() => this.presenceTick(), PRESENCE_FLUSH_MS);
  }

  /** `joined` without the one announcement of our own arrival. */
  private withoutOwn(joined: readonly string[]): string[] {
    const out = [...joined];
    if (this.ownJoinPending !== null) {
      const i = out.indexOf(this.ownJoinPending);
      if (i >= 0) {
        out.splice(i, 1);
        this.ownJoinPending = null;
      }
    }
    return out;
  }

  private writePresence(): void {
    const now = this.env.wallNow();
    for (const line of this.presence.take()) {
      this.store.system(line, now);
      this.announcer.offer('', line);
    }
    this.queueFlush();
  }

  private onError(e: ErrorFrame): void {
    if (e.code === 'invalid_token') {
      // Only a refresh is answered with it.
      this.settle('refresh');
      if (this.refreshing !== null) return this.refreshRefused(e.message);
    }
    if (e.code === 'forbidden') {
      const answered = this.answers.shift();
      if (answered?.kind === 'refresh') return this.refreshRefused(e.message);
      if (answered?.kind === 'join') return this.joinRefused(`You cannot enter #${answered.room}: ${e.message} You are still in #${this.room}.`, e.code);
    }
    this.notice('error', describeError(e.code, e.message, this.limits.max_messages_per_sec), e.code);
    if (e.code === 'unavailable') {
      // Not stored, so not sent: the oldest message still waiting for its
      // echo (the server answers in order) shows as not delivered, with Retry.
      if (this.store.failOldestPending() !== null) this.queueFlush();
    }
    if (e.code === 'invalid_name' && this.nameBeforeRename !== null) {
      this.name = this.nameBeforeRename;
      this.nameBeforeRename = null;
    }
    if (e.code === 'invalid_room') {
      this.settle('join');
      this.stayInRoom();
    }
  }

  private joinRefused(message: string, code: string): void {
    this.notice('error', message, code);
    this.stayInRoom();
  }

  /**
   * A join was refused: the session stays in its room. If other joins are
   * still in flight, their last welcome settles the room.
   */
  private stayInRoom(): void {
    if (this.joinsInFlight > 0) this.joinsInFlight -= 1;
    if (this.joinsInFlight === 0) this.requestedRoom = this.room;
    this.wantedRoom = this.room;
    this.env.onRoom?.(this.room);
  }

  private notice(kind: 'error' | 'decode' | 'info', message: string, code: string | null = null): void {
    const n = this.noticeList.add(kind, message, code);
    this.notices = this.noticeList.items;
    // Announced once; its repeats only raise the count shown.
    if (n.count === 1) this.announcement = message;
  }

  private syncPeople(): void {
    this.participants = this.people.list();
    this.participantCount = this.people.total;
    this.unnamedParticipants = this.people.unnamed;
  }

  private tick(): void {
    this.now = this.env.wallNow();
    const said = this.announcer.take(this.env.perfNow());
    if (said !== null) this.announcement = said;
    if (this.store.expire(this.env.perfNow()) > 0) this.queueFlush();
    // A scroll-back request given up (no answer) frees the top of the list.
    if (this.older !== this.olderState()) this.queueFlush();
  }

  /** Coalesces bursts of frames into one reactive update per animation frame. */
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    if (typeof requestAnimationFrame === 'function' && !document.hidden) {
      requestAnimationFrame(() => this.flush());
    } else {
      setTimeout(() => this.flush(), 16);
    }
  }
}
