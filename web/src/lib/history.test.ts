import { describe, expect, it } from 'vitest';
import { HISTORY_PAGE, ScrollBack, StreamPosition, welcomeAtStart } from './history';
import type { ChatFrame } from './protocol/ChatFrame';
import type { Welcome } from './protocol/Welcome';

function msg(id: number, room = 'lobby'): ChatFrame {
  return {
    type: 'chat',
    id,
    room,
    author: 'Grace',
    text: `m${id}`,
    client_id: null,
    sent_at: null,
    server_time: id,
    calc: null,
  };
}

function welcome(over: Partial<Welcome> = {}): Welcome {
  return {
    session_id: 1,
    name: 'Ada',
    room: 'lobby',
    num_participants: 1,
    participants: [],
    limits: { max_text_chars: 4000, max_frame_bytes: 16384, max_messages_per_sec: 20 },
    epoch: 'e1',
    last_id: 0,
    recovered: null,
    user_id: null,
    history: [],
    ...over,
  };
}

describe('StreamPosition', () => {
  it('offers nothing before a welcome, then the newest id of the room held', () => {
    const p = new StreamPosition();
    expect(p.since('lobby')).toBeNull();
    expect(p.welcome(welcome({ last_id: 7, history: [msg(6), msg(7)] }), null).verdict).toBe('fresh');
    expect(p.since('lobby')).toEqual({ id: 7, epoch: 'e1' });
    // Another room: a plain join, no resume point.
    expect(p.since('rust')).toBeNull();
  });

  it('moves with live frames and refuses ones already shown', () => {
    const p = new StreamPosition();
    p.welcome(welcome({ last_id: 7, history: [msg(7)] }), null);
    expect(p.live(msg(7))).toBe(false);
    expect(p.live(msg(8))).toBe(true);
    expect(p.live(msg(8))).toBe(false);
    expect(p.live(msg(9, 'rust'))).toBe(false);
    expect(p.since('lobby')).toEqual({ id: 8, epoch: 'e1' });
  });

  it('judges a reconnect by the answer to what it offered', () => {
    const p = new StreamPosition();
    p.welcome(welcome({ last_id: 3 }), null);
    const asked = p.since('lobby');
    expect(p.welcome(welcome({ last_id: 5, recovered: true, history: [msg(4), msg(5)] }), asked)).toEqual({
      verdict: 'recovered',
      after: 3,
      epochChanged: false,
    });
    expect(p.lastId).toBe(5);
    expect(p.welcome(welcome({ last_id: 90, recovered: false, history: [msg(90)] }), p.since('lobby'))).toEqual({
      verdict: 'stale',
      after: 5,
      epochChanged: false,
    });
    // `recovered: true` under another epoch cannot be trusted.
    expect(p.welcome(welcome({ epoch: 'e2', last_id: 91, recovered: true }), { id: 90, epoch: 'e1' })).toEqual({
      verdict: 'stale',
      after: 90,
      epochChanged: true,
    });
    expect(p.since('lobby')).toEqual({ id: 91, epoch: 'e2' });
  });

  it('merges a welcome it did not ask for (the room restarted) by id, unless something is missing', () => {
    const p = new StreamPosition();
    p.welcome(welcome({ last_id: 10, history: [msg(10)] }), null);
    // Nothing new, or new messages that join up: recovered after 10.
    expect(p.welcome(welcome({ last_id: 10, history: [msg(9), msg(10)] }), null)).toMatchObject({ verdict: 'recovered', after: 10 });
    expect(p.welcome(welcome({ last_id: 12, history: [msg(10), msg(11), msg(12)] }), null)).toMatchObject({
      verdict: 'recovered',
      after: 10,
    });
    // A gap between 12 and the history's first id.
    expect(p.welcome(welcome({ last_id: 80, history: [msg(31), msg(80)] }), null).verdict).toBe('stale');
    // Another epoch: the stream was lost.
    expect(p.welcome(welcome({ epoch: 'e9', last_id: 1, history: [msg(1)] }), null)).toMatchObject({
      verdict: 'stale',
      epochChanged: true,
    });
    // Asked, but the answer says nothing about it: merged the same way.
    expect(p.welcome(welcome({ epoch: 'e9', last_id: 2, history: [msg(2)] }), { id: 1, epoch: 'e9' }).verdict).toBe('recovered');
  });

  it('never asks to resume from a server that keeps no history (no epoch)', () => {
    const p = new StreamPosition();
    p.welcome(welcome({ epoch: '' }), null);
    expect(p.since('lobby')).toBeNull();
    expect(p.welcome(welcome({ epoch: '' }), null).verdict).toBe('unknown');
  });

  it('starts again after a welcome whose stream restarted lower (a server without history)', () => {
    const p = new StreamPosition();
    p.welcome(welcome({ epoch: '', last_id: 0 }), null);
    expect(p.live(msg(40))).toBe(true);
    p.welcome(welcome({ epoch: '', last_id: 0 }), null);
    expect(p.live(msg(1))).toBe(true);
  });
});

describe('welcomeAtStart', () => {
  it('knows the start from an empty room or a history from id 1', () => {
    expect(welcomeAtStart(welcome())).toBe(true);
    expect(welcomeAtStart(welcome({ last_id: 2, history: [msg(1), msg(2)] }))).toBe(true);
    expect(welcomeAtStart(welcome({ last_id: 60, history: [msg(11), msg(60)] }))).toBe(false);
    // History off (`--welcome-history 0`) in a room with messages.
    expect(welcomeAtStart(welcome({ last_id: 60 }))).toBe(false);
  });
});

describe('ScrollBack', () => {
  it('asks before the oldest id shown, one page at a time', () => {
    const s = new ScrollBack(10_000);
    expect(s.request('lobby', 51, 100, 1000, 0)).toEqual({ before: 51, limit: HISTORY_PAGE });
    expect(s.loading(1)).toBe(true);
    expect(s.request('lobby', 51, 100, 1000, 1)).toBeNull();
    const page = { room: 'lobby', messages: [msg(49), msg(50)], has_more: true };
    expect(s.answer(page)).toEqual(page);
    expect(s.loading(2)).toBe(false);
    // An answer nobody waits for is dropped.
    expect(s.answer(page)).toBeNull();
  });

  it('asks before lastId + 1 when the list holds no message, and not at all at id 1', () => {
    const s = new ScrollBack();
    expect(s.request('lobby', null, 60, 1000, 0)).toEqual({ before: 61, limit: HISTORY_PAGE });
    s.cancel();
    expect(s.request('lobby', null, 0, 1000, 0)).toBeNull();
    expect(s.request('lobby', 1, 9, 1000, 0)).toBeNull();
  });

  it('asks for no more than the list has room for', () => {
    const s = new ScrollBack();
    expect(s.request('lobby', 500, 900, 7, 0)).toEqual({ before: 500, limit: 7 });
    s.cancel();
    expect(s.request('lobby', 500, 900, 0, 0)).toBeNull();
  });

  it('drops an answer for another room and anything not older than asked', () => {
    const s = new ScrollBack();
    s.request('lobby', 10, 10, 1000, 0);
    expect(s.answer({ room: 'rust', messages: [msg(3, 'rust')], has_more: false })).toBeNull();
    expect(s.answer({ room: 'lobby', messages: [msg(8), msg(9), msg(10)], has_more: false })?.messages.map((m) => m.id)).toEqual([
      8, 9,
    ]);
  });

  it('gives up on a request unanswered for the timeout', () => {
    const s = new ScrollBack(10_000);
    s.request('lobby', 10, 10, 1000, 0);
    expect(s.request('lobby', 10, 10, 1000, 9_999)).toBeNull();
    expect(s.loading(10_000)).toBe(false);
    expect(s.request('lobby', 10, 10, 1000, 10_000)).not.toBeNull();
  });
});
