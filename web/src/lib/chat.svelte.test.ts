import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatApp, MAX_QUEUED } from './chat.svelte';
import { chatFrame, FakeSocket, WELCOME } from './testing';

let perf = 0;
let sockets: FakeSocket[] = [];
let stored: Record<string, string> = {};
let hashRoom: string | null = null;

function makeApp(room = 'lobby'): { app: ChatApp; ws: () => FakeSocket } {
  const app = new ChatApp(
    {
      wsBase: 'ws://test',
      storage: {
        getItem: (k) => stored[k] ?? null,
        setItem: (k, v) => {
          stored[k] = v;
        },
      },
      perfNow: () => perf,
      wallNow: () => 1_700_000_000_000 + perf,
      createSocket: (url) => {
        const s = new FakeSocket(url);
        sockets.push(s);
        return s;
      },
      onRoom: (r) => {
        hashRoom = r;
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

function connected(room = 'lobby') {
  const t = makeApp(room);
  t.app.start();
  t.ws().open();
  t.ws().deliver({ ...WELCOME, room });
  t.app.flush();
  return t;
}

function echo(frame: Record<string, unknown>, author = 'Ada', id = 1) {
  return {
    type: 'chat',
    id,
    room: 'lobby',
    author,
    text: frame.text,
    client_id: frame.client_id ?? null,
    sent_at: frame.sent_at ?? null,
    server_time: 1,
    calc: null,
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  perf = 0;
  sockets = [];
  stored = {};
  hashRoom = null;
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ChatApp', () => {
  it('connects with the room and the remembered name', () => {
    stored['actorchat.name'] = 'Ada L';
    const { app, ws } = makeApp('rust');
    app.start();
    expect(ws().url).toBe('ws://test/ws?room=rust&name=Ada+L');
  });

  it('shows an own message as pending, then "Me" with its RTT', () => {
    const { app, ws } = connected();
    expect(app.sendBlocker('   ')).not.toBeNull();
    perf = 100;
    expect(app.send('  hello  ')).toBe(true);
    app.flush();
    const [sent] = ws().frames();
    expect(sent).toMatchObject({ type: 'chat', text: 'hello' });
    expect(String(sent?.client_id)).toMatch(new RegExp(`^${app.clientPrefix}-`));
    expect(app.messages.at(-1)).toMatchObject({ own: true, delivery: 'pending', text: 'hello' });

    perf = 103.5;
    ws().deliver(echo(sent ?? {}));
    ws().deliver(echo({ text: 'hi Ada' }, 'Grace', 2));
    app.flush();
    const chats = app.messages.filter((m) => m.kind === 'chat');
    expect(chats.map((m) => [m.own, m.author, m.delivery, m.rtt])).toEqual([
      [true, 'Ada', 'confirmed', 3.5],
      [false, 'Grace', null, null],
    ]);
    expect([app.sent, app.received]).toEqual([1, 2]);
    expect(app.rttAverage).toBe(3.5);
    expect(app.rttRecent).toEqual([3.5]);
  });

  it('refuses a message whose frame would exceed the byte limit', () => {
    const { app, ws } = connected();
    // 3,000 characters, but each control character is escaped to 6 bytes.
    expect(app.send('\u0001'.repeat(3000))).toBe(false);
    expect(ws().sent).toHaveLength(0);
    expect(app.notices[0]?.message).toMatch(/16384-byte/);
    expect(app.send('é'.repeat(3000))).toBe(true);
  });

  it('marks an unanswered message failed after 10 s', () => {
    const { app } = connected();
    app.send('lost');
    perf = 10_001;
    vi.advanceTimersByTime(300);
    app.flush();
    expect(app.messages.at(-1)?.delivery).toBe('failed');
  });

  it('queues messages written while disconnected and sends them on reconnect', () => {
    const { app, ws } = connected();
    ws().drop(1001);
    app.flush();
    expect(app.connected).toBe(false);
    expect(app.messages.at(-1)?.text).toBe(
      'The server restarted or went away. Reconnecting… Messages you send meanwhile are queued.',
    );
    expect(app.send('while away')).toBe(true);
    app.flush();
    expect(app.queued).toBe(1);
    expect(app.messages.at(-1)).toMatchObject({ text: 'while away', delivery: 'queued' });
    vi.advanceTimersByTime(60_000);
    ws().open();
    ws().deliver(WELCOME);
    app.flush();
    expect(ws().frames().filter((f) => f.type === 'chat').map((f) => f.text)).toEqual(['while away']);
    expect(app.queued).toBe(0);
    expect(app.messages.find((m) => m.text === 'while away')?.delivery).toBe('pending');
    expect(app.messages.at(-1)?.text).toBe('Reconnected to #lobby as Ada.');
  });

  it('sends a full offline queue no faster than the server\'s token bucket refills', () => {
    // The server's bucket (defaults): 40 frames of burst, refilled at 20/s.
    const BURST = 40;
    const RATE = WELCOME.limits.max_messages_per_sec;
    const { app, ws } = connected();
    ws().drop(1001);
    for (let i = 0; i < MAX_QUEUED; i++) expect(app.send(`queued ${i}`)).toBe(true);
    expect(app.send('one too many')).toBe(false);
    vi.advanceTimersByTime(60_000);
    ws().open();
    ws().deliver(WELCOME);
    app.flush();
    const chats = () => ws().frames().filter((f) => f.type === 'chat');
    let tokens = BURST;
    let seen = chats().length;
    tokens -= seen;
    expect(tokens).toBeGreaterThanOrEqual(0);
    // The rest stays visibly queued while it waits its turn.
    expect(app.queued).toBe(MAX_QUEUED - seen);
    // Poll in 10 ms steps, refilling the bucket as the server would.
    for (let t = 0; t < 5_000; t += 10) {
      vi.advanceTimersByTime(10);
      tokens = Math.min(BURST, tokens + (RATE * 10) / 1000);
      const now = chats().length;
      tokens -= now - seen;
      seen = now;
      expect(tokens).toBeGreaterThanOrEqual(0);
    }
    app.flush();
    expect(chats().map((f) => f.text)).toEqual(Array.from({ length: MAX_QUEUED }, (_, i) => `queued ${i}`));
    expect(app.queued).toBe(0);
  });

  it('queues a message written while the queue drains behind it, keeping the order', () => {
    const { app, ws } = connected();
    ws().drop(1001);
    app.send('first');
    app.send('second');
    vi.advanceTimersByTime(60_000);
    ws().open();
    ws().deliver(WELCOME);
    app.send('third');
    vi.advanceTimersByTime(1_000);
    expect(ws().frames().filter((f) => f.type === 'chat').map((f) => f.text)).toEqual(['first', 'second', 'third']);
  });

  it('retries a message that was not delivered', () => {
    const { app, ws } = connected();
    app.send('lost');
    perf = 10_001;
    vi.advanceTimersByTime(300);
    app.flush();
    const failed = app.messages.at(-1);
    expect(failed?.delivery).toBe('failed');
    expect(app.retry(failed?.key ?? -1)).toBe(true);
    app.flush();
    expect(app.messages.at(-1)?.delivery).toBe('pending');
    const chats = ws().frames().filter((f) => f.type === 'chat');
    expect(chats.map((f) => f.text)).toEqual(['lost', 'lost']);
    expect(chats[0]?.client_id).not.toBe(chats[1]?.client_id);
  });

  it('offers the name the server gave back when reconnecting', () => {
    const { app, ws } = connected();
    ws().deliver({ ...WELCOME, name: 'guest-10' });
    ws().drop(1001);
    vi.advanceTimersByTime(60_000);
    expect(ws().url).toBe('ws://test/ws?room=lobby&name=guest-10&since=0&epoch=e1');
    expect(app.name).toBe('guest-10');
  });

  it('sends one join per room switch, however often it is asked for', () => {
    const { app, ws } = connected();
    expect(app.join('lobby')).toBeNull();
    expect(app.join('rust')).toBeNull();
    expect(app.join('rust')).toBeNull();
    expect(ws().frames().filter((f) => f.type === 'join')).toEqual([{ type: 'join', room: 'rust' }]);
    ws().deliver({ ...WELCOME, room: 'rust' });
    expect(app.join('rust')).toBeNull();
    expect(ws().frames().filter((f) => f.type === 'join')).toHaveLength(1);
    expect(app.messages.some((m) => m.text.startsWith('Reconnected'))).toBe(false);
  });

  it('ends in the room asked for last when switching back before the first switch is answered', () => {
    const { app, ws } = connected();
    expect(app.join('rust')).toBeNull();
    expect(app.join('lobby')).toBeNull();
    // The server handles the joins in order: a welcome for each.
    expect(ws().frames().filter((f) => f.type === 'join')).toEqual([
      { type: 'join', room: 'rust' },
      { type: 'join', room: 'lobby' },
    ]);
    ws().deliver({ ...WELCOME, room: 'rust' });
    expect(hashRoom).not.toBe('rust');
    ws().deliver({ ...WELCOME, room: 'lobby' });
    app.flush();
    expect(app.room).toBe('lobby');
    expect(hashRoom).toBe('lobby');
    // Settled: asking for the room we are in sends nothing more.
    expect(app.join('lobby')).toBeNull();
    expect(ws().frames().filter((f) => f.type === 'join')).toHaveLength(2);
  });

  it('joins the room asked for before the first welcome once that welcome arrives', () => {
    const { app, ws } = makeApp('lobby');
    app.start();
    ws().open();
    expect(app.join('rust')).toBeNull();
    ws().deliver(WELCOME);
    expect(ws().frames().filter((f) => f.type === 'join')).toEqual([{ type: 'join', room: 'rust' }]);
    ws().deliver({ ...WELCOME, room: 'rust' });
    expect([app.room, hashRoom]).toEqual(['rust', 'rust']);
  });

  it('writes presence as coalesced system lines, without our own join or rename', () => {
    const { app, ws } = connected();
    const update = (u: object) =>
      ws().deliver({ type: 'room_update', room: 'lobby', num_participants: 2, joined: [], left: [], renamed: [], ...u });
    update({ joined: ['Ada'] });
    app.rename('Ada L');
    update({ renamed: [{ from: 'Ada', to: 'Ada L' }] });
    for (let i = 0; i < 1000; i++) update({ joined: [`bot-${i}`] });
    update({ renamed: [{ from: 'Grace', to: 'Grace H' }], left: ['Linus'] });
    vi.advanceTimersByTime(1100);
    app.flush();
    expect(app.messages.filter((m) => m.kind === 'system').map((m) => m.text)).toEqual([
      'You are in #lobby as Ada.',
      'You are now Ada L.',
      'bot-0 joined',
      'bot-1, bot-2, bot-3 and 996 others joined',
      'Linus left',
      'Grace is now Grace H',
    ]);
  });

  it('resets the statistics when a room is joined', () => {
    const { app, ws } = connected();
    app.send('hi');
    ws().deliver(echo(ws().frames()[0] ?? {}));
    app.flush();
    expect([app.sent, app.received]).toEqual([1, 1]);
    ws().deliver({ ...WELCOME, room: 'rust' });
    app.flush();
    expect([app.sent, app.received, app.rttAverage]).toEqual([0, 0, null]);
  });

  it('announces messages from others, throttled, and counts unread ones in the background', () => {
    const { app, ws } = connected();
    app.setBackground(true);
    ws().deliver(echo({ text: 'one' }, 'Grace', 2));
    ws().deliver(echo({ text: 'two' }, 'Grace', 3));
    expect(app.unread).toBe(2);
    vi.advanceTimersByTime(300);
    expect(app.announcement).toBe('2 new messages. Latest, Grace: two');
    app.setBackground(false);
    expect(app.unread).toBe(0);
  });

  it('writes the rate-limit error for people', () => {
    const { app, ws } = connected();
    ws().deliver({ type: 'error', code: 'rate_limited', message: 'next one accepted in 12 ms' });
    expect(app.notices[0]?.code).toBe('rate_limited');
    expect(app.notices[0]?.message).toMatch(/faster than the server accepts \(20 messages a second\)/);
  });

  it('keeps participants from welcome and room updates', () => {
    const { app, ws } = connected();
    expect([app.participantCount, app.participants]).toEqual([2, ['Ada', 'Grace']]);
    ws().deliver({ type: 'room_update', room: 'lobby', num_participants: 3, joined: ['Linus'], left: [], renamed: [] });
    ws().deliver({ type: 'room_update', room: 'lobby', num_participants: 2, joined: [], left: ['Grace'], renamed: [] });
    expect([app.participantCount, app.participants]).toEqual([2, ['Ada', 'Linus']]);
  });

  it('renames optimistically, remembers the name and reverts when refused', () => {
    const { app, ws } = connected();
    expect(app.rename('  ')).toMatch(/visible/);
    expect(app.rename(' Ada Lovelace ')).toBeNull();
    expect(ws().frames().at(-1)).toEqual({ type: 'set_name', name: 'Ada Lovelace' });
    expect(app.name).toBe('Ada Lovelace');
    expect(stored['actorchat.name']).toBe('Ada Lovelace');
    ws().deliver({ type: 'error', code: 'invalid_name', message: 'That name is taken.' });
    expect(app.name).toBe('Ada');
    expect(app.notices[0]).toMatchObject({ code: 'invalid_name', message: 'That name is taken.' });
  });

  it('switches rooms on welcome, clearing the list and updating the hash', () => {
    const { app, ws } = connected();
    ws().deliver(echo({ text: 'old room' }, 'Grace'));
    expect(app.join('bad room')).not.toBeNull();
    expect(app.join('rust')).toBeNull();
    expect(ws().frames().at(-1)).toEqual({ type: 'join', room: 'rust' });
    ws().deliver({ ...WELCOME, room: 'rust', participants: ['Ada'], num_participants: 1 });
    app.flush();
    expect(app.room).toBe('rust');
    expect(hashRoom).toBe('rust');
    expect(app.messages.map((m) => m.text)).toEqual(['You are in #rust as Ada.']);
  });

  it('shows frames the codec refuses as notices and keeps going', () => {
    const { app, ws } = connected();
    ws().deliver('not json at all');
    expect(app.notices[0]?.kind).toBe('decode');
    expect(app.connected).toBe(true);
  });

  it('auto-sends the draft no faster than the server allows', () => {
    const { app, ws } = connected();
    app.draft = 'Hello 👋';
    app.autoIntervalMs = 0;
    expect(app.effectiveIntervalMs).toBe(50);
    app.startAuto();
    vi.advanceTimersByTime(1000);
    app.stopAuto();
    vi.advanceTimersByTime(1000);
    const chats = ws().frames().filter((f) => f.type === 'chat');
    expect(chats.length).toBe(21);
    expect(chats.every((f) => f.text === 'Hello 👋')).toBe(true);
    app.autoIntervalMs = 200;
    expect(app.effectiveIntervalMs).toBe(200);
  });

  describe('history', () => {
    const chats = (app: ChatApp) => app.messages.filter((m) => m.kind === 'chat');
    const ids = (app: ChatApp) => chats(app).map((m) => m.id);

    it('shows the welcome history as earlier messages, outside the statistics', () => {
      const { app, ws } = makeApp();
      app.start();
      ws().open();
      ws().deliver({ ...WELCOME, last_id: 3, history: [chatFrame(2, 'two'), chatFrame(3, 'three')] });
      app.flush();
      expect(chats(app).map((m) => [m.id, m.text, m.origin, m.rtt])).toEqual([
        [2, 'two', 'earlier', null],
        [3, 'three', 'earlier', null],
      ]);
      expect(app.messages.at(-1)?.text).toBe('You are in #lobby as Ada. Earlier messages are above.');
      expect([app.received, app.rttAverage, app.older]).toEqual([0, null, 'more']);
      // A live frame continues after the history; a repeat of it is dropped.
      ws().deliver(chatFrame(3, 'three'));
      ws().deliver(chatFrame(4, 'four'));
      app.flush();
      expect(ids(app)).toEqual([2, 3, 4]);
      expect(app.received).toBe(1);
    });

    it('knows the start of the room from an empty one', () => {
      const { app } = connected();
      expect(app.older).toBe('start');
      expect(app.loadOlder()).toBe(false);
    });

    it('resumes after a reconnect with the newest id, appending exactly the missed messages', () => {
      const { app, ws } = connected();
      ws().deliver(chatFrame(1, 'one'));
      perf = 5;
      app.send('mine');
      const mine = ws().frames()[0] ?? {};
      // Presence news is throttled: "Linus left" is written a second later,
      // below the message queued meanwhile.
      const update = (u: object) =>
        ws().deliver({ type: 'room_update', room: 'lobby', num_participants: 1, joined: [], left: [], renamed: [], ...u });
      update({ joined: ['Linus'] });
      update({ left: ['Linus'] });
      ws().drop(1006);
      app.send('offline');
      vi.advanceTimersByTime(60_000);
      expect(ws().url).toBe('ws://test/ws?room=lobby&name=Ada&since=1&epoch=e1');
      ws().open();
      // The server stored "mine" (its echo was lost) and Grace wrote meanwhile.
      ws().deliver({
        ...WELCOME,
        last_id: 3,
        recovered: true,
        history: [
          chatFrame(2, 'mine', { author: 'Ada', client_id: mine.client_id }),
          chatFrame(3, 'meanwhile'),
        ],
      });
      perf = 100;
      const offline = ws().frames().find((f) => f.text === 'offline') ?? {};
      ws().deliver(chatFrame(4, 'offline', { author: 'Ada', client_id: offline.client_id }));
      app.flush();
      expect(chats(app).map((m) => [m.id, m.text, m.delivery])).toEqual([
        [1, 'one', null],
        [2, 'mine', 'confirmed'],
        [3, 'meanwhile', null],
        [4, 'offline', 'confirmed'],
      ]);
      expect(chats(app).map((m) => m.origin)).toEqual(['live', 'missed', 'missed', 'live']);
      const lines = app.messages.map((m) => m.text);
      expect(lines.indexOf('Linus left')).toBeLessThan(lines.indexOf('meanwhile'));
      // Only the live echo measured a round trip.
      expect(app.rttRecent).toEqual([95]);
      expect(app.messages.some((m) => m.text === 'Reconnected to #lobby as Ada. 2 messages were sent while you were away.')).toBe(true);
      expect(app.notices).toHaveLength(0);
    });

    it('replaces the list with the recent history when the server could not recover, and says so', () => {
      const { app, ws } = connected();
      ws().deliver(chatFrame(1, 'one'));
      ws().deliver(chatFrame(2, 'two'));
      ws().drop(1006);
      app.send('offline');
      vi.advanceTimersByTime(60_000);
      ws().open();
      ws().deliver({ ...WELCOME, epoch: 'e2', last_id: 5, recovered: false, history: [chatFrame(4, 'four'), chatFrame(5, 'five')] });
      app.flush();
      expect(chats(app).map((m) => [m.id, m.text, m.origin])).toEqual([
        [4, 'four', 'earlier'],
        [5, 'five', 'earlier'],
        [null, 'offline', 'live'],
      ]);
      expect(app.messages.find((m) => m.kind === 'system')?.text).toMatch(
        /^Reconnected to #lobby as Ada\. Could not recover .*lost its stored history.*recent history/,
      );
      expect(app.notices[0]).toMatchObject({ kind: 'info', code: 'not_recovered' });
      // The next reconnect resumes in the new epoch.
      ws().drop(1006);
      vi.advanceTimersByTime(60_000);
      expect(ws().url).toMatch(/since=5&epoch=e2$/);
    });

    it('starts another room from its welcome, without resuming', () => {
      const { app, ws } = connected();
      ws().deliver(chatFrame(7, 'lobby talk'));
      app.join('rust');
      ws().deliver({ ...WELCOME, room: 'rust', last_id: 1, history: [chatFrame(1, 'rust talk', { room: 'rust' })] });
      app.flush();
      expect(chats(app).map((m) => m.text)).toEqual(['rust talk']);
      ws().drop(1006);
      vi.advanceTimersByTime(60_000);
      expect(ws().url).toBe('ws://test/ws?room=rust&name=Ada&since=1&epoch=e1');
    });

    it('loads older pages at the top until the start of the room', () => {
      const { app, ws } = makeApp();
      app.start();
      ws().open();
      ws().deliver({ ...WELCOME, last_id: 60, history: [chatFrame(59, 'm59'), chatFrame(60, 'm60')] });
      app.flush();
      expect(app.loadOlder()).toBe(true);
      expect(app.loadOlder()).toBe(false);
      app.flush();
      expect(app.older).toBe('loading');
      expect(ws().frames().at(-1)).toEqual({ type: 'history', before: 59, limit: 50 });
      const page = (from: number, to: number, hasMore: boolean) => ({
        type: 'history',
        room: 'lobby',
        messages: Array.from({ length: to - from + 1 }, (_, i) => chatFrame(from + i, `m${from + i}`)),
        has_more: hasMore,
      });
      ws().deliver(page(9, 58, true));
      app.flush();
      expect(app.older).toBe('more');
      expect(app.loadOlder()).toBe(true);
      expect(ws().frames().at(-1)).toEqual({ type: 'history', before: 9, limit: 50 });
      ws().deliver(page(1, 8, false));
      app.flush();
      expect(app.older).toBe('start');
      expect(ids(app)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(chats(app).every((m) => m.origin === 'earlier')).toBe(true);
      expect(app.loadOlder()).toBe(false);
    });

    it('ignores a page that answers nothing asked, and forgets the request on a reconnect', () => {
      const { app, ws } = makeApp();
      app.start();
      ws().open();
      ws().deliver({ ...WELCOME, last_id: 60, history: [chatFrame(60, 'm60')] });
      ws().deliver({ type: 'history', room: 'lobby', messages: [chatFrame(1, 'm1')], has_more: false });
      app.flush();
      expect(ids(app)).toEqual([60]);
      app.loadOlder();
      ws().drop(1006);
      vi.advanceTimersByTime(60_000);
      ws().open();
      ws().deliver({ ...WELCOME, last_id: 60, recovered: true });
      app.flush();
      expect(app.older).toBe('more');
      expect(app.loadOlder()).toBe(true);
    });

    it('merges a welcome it did not ask for (the server restarted the room) by id', () => {
      const { app, ws } = connected();
      ws().deliver(chatFrame(1, 'one'));
      ws().deliver(chatFrame(2, 'two'));
      ws().deliver({ ...WELCOME, last_id: 3, history: [chatFrame(1, 'one'), chatFrame(2, 'two'), chatFrame(3, 'three')] });
      app.flush();
      expect(chats(app).map((m) => [m.id, m.origin])).toEqual([
        [1, 'live'],
        [2, 'live'],
        [3, 'missed'],
      ]);
      expect(app.notices).toHaveLength(0);
    });

    it('keeps the list after a reconnect to a server without history, whose ids start again', () => {
      const { app, ws } = makeApp();
      app.start();
      ws().open();
      ws().deliver({ ...WELCOME, epoch: '' });
      ws().deliver(chatFrame(1, 'before'));
      ws().drop(1012);
      vi.advanceTimersByTime(60_000);
      expect(ws().url).toBe('ws://test/ws?room=lobby&name=Ada');
      ws().open();
      ws().deliver({ ...WELCOME, epoch: '' });
      ws().deliver(chatFrame(1, 'after'));
      app.flush();
      expect(chats(app).map((m) => m.text)).toEqual(['before', 'after']);
    });

    it('marks the message the server could not store as not delivered', () => {
      const { app, ws } = connected();
      app.send('one');
      app.send('two');
      ws().deliver({ type: 'error', code: 'unavailable', message: 'The message could not be stored.' });
      app.flush();
      expect(chats(app).map((m) => m.delivery)).toEqual(['failed', 'pending']);
      expect(app.notices[0]?.code).toBe('unavailable');
      expect(app.notices[0]?.message).toMatch(/not sent/);
    });
  });
});
