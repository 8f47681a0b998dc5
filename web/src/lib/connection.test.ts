import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff';
import { Connection, type ConnState } from './connection';
import type { ServerFrame } from './protocol/ServerFrame';
import { FakeSocket, ManualTimers, WELCOME } from './testing';

function setup(opts: { heartbeatMs?: number; staleMs?: number; isFinal?: (code: number) => boolean } = {}) {
  const timers = new ManualTimers();
  const sockets: FakeSocket[] = [];
  const frames: ServerFrame[] = [];
  const errors: string[] = [];
  const states: ConnState[] = [];
  let n = 0;
  const conn = new Connection({
    url: () => `ws://x/ws?try=${++n}`,
    onFrame: (f) => frames.push(f),
    onDecodeError: (e) => errors.push(e),
    onState: (s) => states.push(s),
    backoff: new Backoff({ baseMs: 1000, maxMs: 8000, random: () => 1 }),
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    timers,
    heartbeatMs: opts.heartbeatMs ?? 0,
    staleMs: opts.staleMs ?? 45_000,
    ...(opts.isFinal ? { isFinal: opts.isFinal } : {}),
  });
  const last = (): FakeSocket => {
    const s = sockets.at(-1);
    if (s === undefined) throw new Error('no socket yet');
    return s;
  };
  return { timers, sockets, frames, errors, states, conn, last };
}

describe('Connection', () => {
  it('decodes frames and reports decode errors without dropping the socket', () => {
    const t = setup();
    t.conn.start();
    t.last().open();
    t.last().deliver(WELCOME);
    t.last().deliver('{"type":"party"}');
    t.last().deliver({ type: 'pong', nonce: 1, server_time: 2 });
    expect(t.frames.map((f) => f.type)).toEqual(['welcome', 'pong']);
    expect(t.errors).toEqual(['unknown frame type "party"']);
    expect(t.conn.isOpen).toBe(true);
  });

  it('redials with growing delays and recomputes the URL each time', () => {
    const t = setup();
    t.conn.start();
    t.last().drop();
    expect(t.states.at(-1)).toMatchObject({ state: 'waiting', retryAt: 1000, code: 1006 });
    t.timers.advance(999);
    expect(t.sockets).toHaveLength(1);
    t.timers.advance(1);
    expect(t.sockets).toHaveLength(2);
    t.last().drop();
    t.timers.advance(1999);
    expect(t.sockets).toHaveLength(2);
    t.timers.advance(1);
    expect(t.sockets.map((s) => s.url)).toEqual(['ws://x/ws?try=1', 'ws://x/ws?try=2', 'ws://x/ws?try=3']);
  });

  it('resets the backoff only after a welcome, not on a bare open', () => {
    const t = setup();
    t.conn.start();
    t.last().open();
    t.last().drop(1001);
    t.timers.advance(1000);
    t.last().open();
    t.last().drop(1001);
    // Opened but never welcomed: the second delay doubled.
    expect(t.states.at(-1)).toMatchObject({ state: 'waiting', retryAt: 1000 + 2000 });
    t.timers.advance(2000);
    t.last().open();
    t.last().deliver(WELCOME);
    t.last().drop(1001);
    expect(t.states.at(-1)).toMatchObject({ retryAt: t.timers.now() + 1000 });
  });

  it('sends only while open', () => {
    const t = setup();
    t.conn.start();
    expect(t.conn.send({ type: 'ping', nonce: 1 })).toBe(false);
    t.last().open();
    expect(t.conn.send({ type: 'ping', nonce: 1 })).toBe(true);
    expect(t.last().sent).toEqual(['{"type":"ping","nonce":1}']);
  });

  it('retries at once on request and stops for good', () => {
    const t = setup();
    t.conn.start();
    t.last().drop();
    t.conn.reconnectNow();
    expect(t.sockets).toHaveLength(2);
    t.conn.stop();
    expect(t.last().closedWith).toBe(1000);
    t.timers.advance(60_000);
    expect(t.sockets).toHaveLength(2);
    expect(t.states.at(-1)).toEqual({ state: 'stopped', code: null });
  });

  it('stops instead of redialling after a final close code, saying which', () => {
    const t = setup({ heartbeatMs: 10_000, isFinal: (code) => code === 4001 });
    t.conn.start();
    t.last().open();
    t.last().drop(1001);
    t.timers.advance(1000);
    expect(t.sockets).toHaveLength(2);
    t.last().open();
    t.last().drop(4001);
    expect(t.states.at(-1)).toEqual({ state: 'stopped', code: 4001 });
    t.timers.advance(120_000);
    expect(t.sockets).toHaveLength(2);
    // Nothing is left running: no retry, no heartbeat.
    expect(t.timers.pending).toBe(0);
  });

  it('restarts with a fresh URL at once, open or stopped', () => {
    const t = setup({ isFinal: (code) => code === 4001 });
    t.conn.start();
    const first = t.last();
    first.open();
    t.conn.restart();
    expect(first.closedWith).toBe(1000);
    expect(t.sockets.map((s) => s.url)).toEqual(['ws://x/ws?try=1', 'ws://x/ws?try=2']);
    // The replaced socket's late close is not a drop.
    first.drop(1000);
    expect(t.states.at(-1)).toEqual({ state: 'connecting', attempt: 0 });
    t.last().open();
    t.last().drop(4001);
    t.conn.restart();
    expect(t.sockets).toHaveLength(3);
    expect(t.states.at(-1)).toEqual({ state: 'connecting', attempt: 0 });
  });

  it('ignores events from a socket it already replaced', () => {
    const t = setup();
    t.conn.start();
    const first = t.last();
    first.drop();
    t.timers.advance(1000);
    first.deliver(WELCOME);
    first.drop();
    expect(t.frames).toHaveLength(0);
    expect(t.sockets).toHaveLength(2);
  });

  it('pings periodically and redials a socket that went silent', () => {
    const t = setup({ heartbeatMs: 10_000, staleMs: 25_000 });
    t.conn.start();
    t.last().open();
    t.timers.advance(10_000);
    expect(t.last().frames()).toEqual([{ type: 'ping', nonce: 1 }]);
    t.timers.advance(20_000);
    const dead = t.sockets[0];
    expect(dead?.closedWith).toBe(4000);
    t.timers.advance(1000);
    expect(t.sockets).toHaveLength(2);
  });
});
