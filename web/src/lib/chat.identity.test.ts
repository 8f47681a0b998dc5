import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatApp, TOKEN_EXPIRED } from './chat.svelte';
import { TokenStore, type IdentityAnswer, type User } from './identity';
import { chatFrame, FakeSocket, WELCOME } from './testing';

let sockets: FakeSocket[] = [];
let session: Record<string, string> = {};
let hashRoom: string | null = null;
/** Every token `/api/identity` was asked about, in order. */
let asked: (string | null)[] = [];
/** What `/api/identity` answers for a token (the default: the user `ada`). */
let answer: (token: string | null) => IdentityAnswer = () => ({ kind: 'known', auth: 'optional', user: ADA });

const ADA: User = { user_id: 'ada', name: 'Ada', rooms: null, admin: false, expires_at: 1_700_000_600 };

function makeApp(room = 'lobby', token: string | null = 'tok-1') {
  if (token !== null) session['actorchat.token'] = token;
  const app = new ChatApp(
    {
      wsBase: 'ws://test',
      storage: null,
      perfNow: () => 0,
      wallNow: () => 1_700_000_000_000,
      createSocket: (url) => {
        const s = new FakeSocket(url);
        sockets.push(s);
        return s;
      },
      onRoom: (r) => {
        hashRoom = r;
      },
      identity: {
        tokens: new TokenStore({
          getItem: (k) => session[k] ?? null,
          setItem: (k, v) => {
            session[k] = v;
          },
          removeItem: (k) => {
            delete session[k];
          },
        }),
        ask: (t) => {
          asked.push(t);
          return Promise.resolve(answer(t));
        },
      },
    },
    room,
  );
  const ws = (): FakeSocket => {
    const s = sockets.at(-1);
    if (s === undefined) throw new Error('no socket');
    return s;
  };
  return { app, ws };
}

/** Lets the identity answer (a resolved promise) arrive. */
const answered = () => vi.advanceTimersByTimeAsync(0);

async function signedIn(user: User = ADA, room = 'lobby') {
  const t = makeApp(room);
  t.app.start();
  await answered();
  t.ws().open();
  t.ws().deliver({ ...WELCOME, room, name: user.name, user_id: user.user_id });
  t.app.flush();
  return t;
}

beforeEach(() => {
  vi.useFakeTimers();
  sockets = [];
  session = {};
  hashRoom = null;
  asked = [];
  answer = () => ({ kind: 'known', auth: 'optional', user: ADA });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ChatApp sign-in', () => {
  it('asks who the token makes it before connecting, then presents the token', async () => {
    const { app, ws } = makeApp('rust', 'a.b+c');
    app.start();
    expect(sockets).toHaveLength(0);
    await answered();
    expect(asked).toEqual(['a.b+c']);
    expect(ws().url).toBe('ws://test/ws?room=rust&token=a.b%2Bc');
    expect([app.auth, app.user?.user_id]).toEqual(['optional', 'ada']);
    ws().open();
    ws().deliver({ ...WELCOME, room: 'rust', user_id: 'ada' });
    expect(app.userId).toBe('ada');
    expect(app.identities).toBe(true);
  });

  it('connects as a guest without a token, and as always when the server says nothing of identities', async () => {
    answer = () => ({ kind: 'known', auth: 'off', user: null });
    const off = makeApp('lobby', null);
    off.app.start();
    await answered();
    expect(off.ws().url).toBe('ws://test/ws?room=lobby');
    expect(off.app.identities).toBe(false);

    answer = () => ({ kind: 'unavailable', message: 'The server could not be reached.' });
    const old = makeApp('lobby', 'tok');
    old.app.start();
    await answered();
    expect(old.ws().url).toBe('ws://test/ws?room=lobby&token=tok');
    expect([old.app.auth, old.app.halt]).toEqual([null, null]);
  });

  it('says the server\'s sentence for a refused token and does not connect', async () => {
    answer = () => ({ kind: 'refused', status: 401, message: 'The token has expired.' });
    const { app } = makeApp();
    app.start();
    await answered();
    vi.advanceTimersByTime(120_000);
    expect(sockets).toHaveLength(0);
    expect(app.conn).toEqual({ state: 'stopped', code: null });
    expect(app.halt?.kind).toBe('refused');
    expect(app.halt?.message).toMatch(/^The token has expired\. .*#token=/);
    expect(app.sendBlocker('hi')).toBe(app.halt?.message);
  });

  it('says plainly how to get in when the server requires a token and the tab has none', async () => {
    answer = () => ({ kind: 'refused', status: 401, message: 'This server requires a token: connect with ?token=…' });
    const { app } = makeApp('lobby', null);
    app.start();
    await answered();
    expect(sockets).toHaveLength(0);
    expect(app.halt?.message).toMatch(/signed-in users only.*#token=/);
  });

  it('enters a room the token grants instead of one it would be refused', async () => {
    answer = () => ({ kind: 'known', auth: 'required', user: { ...ADA, rooms: ['team-*', 'general'] } });
    const { app, ws } = makeApp('secret');
    app.start();
    await answered();
    expect(ws().url).toMatch(/^ws:\/\/test\/ws\?room=general&/);
    expect([app.room, hashRoom]).toEqual(['general', 'general']);
    expect(app.notices[0]?.message).toMatch(/does not grant #secret.*#general/);

    answer = () => ({ kind: 'known', auth: 'required', user: { ...ADA, rooms: ['team-*'] } });
    const none = makeApp('secret');
    none.app.start();
    await answered();
    expect(sockets).toHaveLength(1);
    expect(none.app.halt?.kind).toBe('no_room');
    expect(none.app.halt?.message).toMatch(/team-\*/);
  });

  it('stops for good when the server closes the session at its token\'s expiry', async () => {
    const { app, ws } = await signedIn();
    ws().drop(TOKEN_EXPIRED);
    app.flush();
    vi.advanceTimersByTime(120_000);
    expect(sockets).toHaveLength(1);
    expect(app.conn).toEqual({ state: 'stopped', code: TOKEN_EXPIRED });
    expect(app.halt?.kind).toBe('expired');
    expect(app.halt?.message).toMatch(/^Your session expired at .+, so you are no longer connected\./);
    expect(app.messages.at(-1)?.text).toBe(app.halt?.message);
  });

  it('stops redialling once a failed dial turns out to be a refused token', async () => {
    const { app, ws } = await signedIn();
    ws().drop(1001);
    // The token expired while the connection was down: the next dial fails before any welcome.
    answer = () => ({ kind: 'refused', status: 401, message: 'The token has expired.' });
    vi.advanceTimersByTime(60_000);
    ws().drop(1006);
    await answered();
    expect(asked).toEqual(['tok-1', 'tok-1']);
    vi.advanceTimersByTime(120_000);
    expect(sockets).toHaveLength(2);
    expect(app.halt?.message).toMatch(/^The token has expired\./);
  });

  it('extends the session in-band with a new token of the same user', async () => {
    const { app, ws } = await signedIn();
    answer = () => ({ kind: 'known', auth: 'optional', user: { ...ADA, name: 'Ada L', admin: true, expires_at: 1_700_003_600 } });
    await app.offerToken('tok-2');
    expect(ws().frames().at(-1)).toEqual({ type: 'refresh', token: 'tok-2' });
    // Not the tab's token until the server takes it.
    expect(session['actorchat.token']).toBe('tok-1');
    ws().deliver({ type: 'refreshed', expires_at: 1_700_003_600 });
    expect(session['actorchat.token']).toBe('tok-2');
    expect(app.expiresAt).toBe(1_700_003_600);
    // The new token's admin applies at once; the name stays until the next connection.
    expect([app.user?.admin, app.user?.name]).toEqual([true, 'Ada']);
    expect(app.notices[0]?.code).toBe('refreshed');
    expect(sockets).toHaveLength(1);
    ws().drop(1001);
    vi.advanceTimersByTime(60_000);
    expect(ws().url).toMatch(/&token=tok-2$/);
  });

  it('keeps the current token when a refresh is refused, and says until when the session lasts', async () => {
    const { app, ws } = await signedIn();
    await app.offerToken('tok-2');
    ws().deliver({ type: 'error', code: 'invalid_token', message: 'The new token is for another user; a session keeps its user.' });
    expect(app.notices[0]?.message).toMatch(/^Your session could not be extended: The new token is for another user.*still ends at/);
    await app.offerToken('tok-3');
    ws().deliver({ type: 'error', code: 'forbidden', message: 'Your token does not grant the room lobby.' });
    expect(app.notices[0]?.message).toMatch(/^Your session could not be extended: Your token does not grant the room lobby\./);
    expect(app.room).toBe('lobby');
    expect(session['actorchat.token']).toBe('tok-1');
    ws().drop(1001);
    vi.advanceTimersByTime(60_000);
    expect(ws().url).toMatch(/&token=tok-1$/);
  });

  it('says at once when the new token itself is refused, and goes on', async () => {
    const { app, ws } = await signedIn();
    answer = () => ({ kind: 'refused', status: 401, message: 'The token\'s signature is not valid for this server\'s key.' });
    await app.offerToken('forged');
    expect(ws().frames().some((f) => f.type === 'refresh')).toBe(false);
    expect(app.notices[0]?.message).toMatch(/^The new token was not accepted: The token's signature/);
    expect([app.connected, session['actorchat.token']]).toEqual([true, 'tok-1']);
  });

  it('connects again with a new token when a guest signs in or the session ended', async () => {
    answer = () => ({ kind: 'known', auth: 'optional', user: null });
    const { app, ws } = makeApp('lobby', null);
    app.start();
    await answered();
    ws().open();
    ws().deliver(WELCOME);
    expect(app.identities).toBe(true);
    answer = () => ({ kind: 'known', auth: 'optional', user: ADA });
    await app.offerToken('tok-ada');
    expect(sockets).toHaveLength(2);
    expect(sockets[0]?.closedWith).toBe(1000);
    expect(ws().url).toMatch(/&token=tok-ada$/);
    ws().open();
    ws().deliver({ ...WELCOME, user_id: 'ada' });
    ws().drop(TOKEN_EXPIRED);
    expect(app.halt?.kind).toBe('expired');
    await app.offerToken('tok-ada-2');
    expect(app.halt).toBeNull();
    expect(sockets).toHaveLength(3);
    expect(ws().url).toMatch(/&token=tok-ada-2$/);
  });

  it('keeps the room when a join is forbidden, with a notice naming both rooms', async () => {
    const { app, ws } = await signedIn();
    expect(app.join('secret')).toBeNull();
    ws().deliver({ type: 'error', code: 'forbidden', message: 'Your token does not grant the room secret.' });
    expect(app.notices[0]?.message).toBe(
      'You cannot enter #secret: Your token does not grant the room secret. You are still in #lobby.',
    );
    expect([app.room, hashRoom]).toEqual(['lobby', 'lobby']);
    // Asking again sends the join again (the refused one is forgotten).
    app.join('secret');
    expect(ws().frames().filter((f) => f.type === 'join')).toHaveLength(2);
  });

  it('tells a forbidden join from a refused refresh by the order they were sent', async () => {
    const { app, ws } = await signedIn();
    await app.offerToken('tok-2');
    app.join('secret');
    ws().deliver({ type: 'error', code: 'forbidden', message: 'Your token does not grant the room lobby.' });
    ws().deliver({ type: 'error', code: 'forbidden', message: 'Your token does not grant the room secret.' });
    expect(app.notices.map((n) => n.message.split(':')[0])).toEqual(['You cannot enter #secret', 'Your session could not be extended']);
  });

  it('knows its own messages by user id when both sides are verified, and refuses a rename', async () => {
    const { app, ws } = await signedIn();
    ws().deliver(chatFrame(1, 'from my phone', { author: 'Ada', user_id: 'ada', client_id: 'phone-1' }));
    ws().deliver(chatFrame(2, 'same name, a guest', { author: 'Ada', client_id: 'g-1' }));
    ws().deliver(chatFrame(3, 'Grace', { user_id: 'grace' }));
    app.send('mine');
    app.flush();
    expect(app.messages.filter((m) => m.kind === 'chat').map((m) => [m.text, m.own, m.userId])).toEqual([
      ['from my phone', true, 'ada'],
      // A guest may take the name of a verified user who joined after it, never the id.
      ['same name, a guest', false, null],
      ['Grace', false, 'grace'],
      ['mine', true, 'ada'],
    ]);
    expect(app.rename('Countess')).toMatch(/sign-in/);
    expect(ws().frames().some((f) => f.type === 'set_name')).toBe(false);
  });
});
