import { describe, expect, it } from 'vitest';
import { MessageStore } from './messages';
import type { ChatMessage } from './protocol/ChatMessage';

function chat(over: Partial<ChatMessage> = {}): ChatMessage {
  return {
    id: 1,
    room: 'lobby',
    author: 'Grace',
    text: 'hi',
    client_id: null,
    sent_at: null,
    server_time: 1000,
    calc: null,
    ...over,
  };
}

describe('MessageStore capping', () => {
  it('keeps only the newest `cap` messages', () => {
    const s = new MessageStore(1000);
    for (let i = 1; i <= 2500; i++) s.receive(chat({ id: i, text: `m${i}` }), false, 0);
    expect(s.items).toHaveLength(1000);
    expect(s.items[0]?.text).toBe('m1501');
    expect(s.items[999]?.text).toBe('m2500');
  });

  it('keeps keys strictly increasing so rows keep their colour parity', () => {
    const s = new MessageStore(3);
    for (let i = 0; i < 10; i++) s.system(`s${i}`, 0);
    expect(s.items.map((e) => e.key)).toEqual([8, 9, 10]);
  });

  it('forgets pending messages dropped by the cap; their late echo is appended', () => {
    const s = new MessageStore(2);
    s.addPending('c-1', 'Me', 'first', 0, 0);
    s.system('a', 0);
    s.system('b', 0);
    expect(s.pendingCount).toBe(0);
    const { entry, rtt } = s.receive(chat({ client_id: 'c-1', text: 'first' }), true, 5);
    expect(rtt).toBeNull();
    expect(entry.delivery).toBe('confirmed');
    expect(s.items.at(-1)).toBe(entry);
  });
});

describe('MessageStore delivery tracking', () => {
  it('shows an own message at once as pending and confirms it with its round trip', () => {
    const s = new MessageStore();
    const pending = s.addPending('c-1', 'Ada', 'hello', 100, 5000);
    expect(pending.delivery).toBe('pending');
    expect(pending.own).toBe(true);
    s.receive(chat({ author: 'Grace' }), false, 101);
    const { entry, rtt } = s.receive(
      chat({ author: 'Ada', text: 'hello', client_id: 'c-1', sent_at: 5000 }),
      true,
      112.5,
    );
    expect(rtt).toBe(12.5);
    expect(entry.delivery).toBe('confirmed');
    expect(entry.rtt).toBe(12.5);
    // Confirmed in place: still before Grace's message, no duplicate.
    expect(s.items.map((e) => e.author)).toEqual(['Ada', 'Grace']);
    expect(s.items[0]).not.toBe(pending);
  });

  it('marks messages without an echo within 10 s as failed', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'one', 0, 0);
    s.addPending('c-2', 'Ada', 'two', 5000, 0);
    expect(s.expire(9999)).toBe(0);
    expect(s.expire(10_000)).toBe(1);
    expect(s.items.map((e) => e.delivery)).toEqual(['failed', 'pending']);
    expect(s.expire(10_001)).toBe(0);
    expect(s.pendingCount).toBe(1);
  });

  it('still confirms a failed message when its echo arrives late', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'one', 0, 0);
    s.expire(20_000);
    const { entry, rtt } = s.receive(chat({ client_id: 'c-1' }), true, 21_000);
    expect(entry.delivery).toBe('confirmed');
    expect(rtt).toBe(21_000);
    expect(s.items).toHaveLength(1);
  });

  it('treats an unknown client_id as an ordinary message', () => {
    const s = new MessageStore();
    const { entry, rtt } = s.receive(chat({ client_id: 'someone-else-1' }), false, 0);
    expect(rtt).toBeNull();
    expect(entry.delivery).toBeNull();
    expect(entry.own).toBe(false);
  });

  it('carries the calculation result of the echo', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', '20!', 0, 0);
    const calc = {
      id: 'c1',
      expr: '20!',
      status: 'ok' as const,
      value: '2432902008176640000',
      digits: 19,
      truncated: false,
      elapsed_ms: 0,
      reason: null,
    };
    const { entry } = s.receive(chat({ client_id: 'c-1', text: '20!', calc }), true, 3);
    expect(entry.calc).toEqual(calc);
  });

  it('clears everything on room change', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'x', 0, 0);
    s.clear();
    expect(s.items).toHaveLength(0);
    expect(s.pendingCount).toBe(0);
  });
});

describe('MessageStore offline queue and retry', () => {
  it('queues messages written offline and sends them in order on reconnect', () => {
    const s = new MessageStore();
    s.addQueued('Ada', 'one', 0);
    s.addQueued('Ada', 'two', 0);
    expect(s.queuedCount).toBe(2);
    expect(s.items.map((e) => e.delivery)).toEqual(['queued', 'queued']);
    const sent: string[] = [];
    expect(s.sendQueued((t) => (sent.push(t), `c-${sent.length}`), 50)).toBe(2);
    expect(sent).toEqual(['one', 'two']);
    expect(s.queuedCount).toBe(0);
    expect(s.items.map((e) => e.delivery)).toEqual(['pending', 'pending']);
    const { rtt } = s.receive(chat({ client_id: 'c-2', text: 'two' }), true, 80);
    expect(rtt).toBe(30);
  });

  it('keeps the rest queued when sending stops', () => {
    const s = new MessageStore();
    s.addQueued('Ada', 'one', 0);
    s.addQueued('Ada', 'two', 0);
    expect(s.sendQueued((t) => (t === 'one' ? 'c-1' : null), 0)).toBe(1);
    expect(s.queuedCount).toBe(1);
    expect(s.items[1]?.delivery).toBe('queued');
  });

  it('keeps queued messages across a room change', () => {
    const s = new MessageStore();
    s.system('You are in #a', 0);
    s.addQueued('Ada', 'later', 0);
    s.clear();
    expect(s.items.map((e) => [e.text, e.delivery])).toEqual([['later', 'queued']]);
    expect(s.queuedCount).toBe(1);
  });

  it('retries a failed message under a new client_id', () => {
    const s = new MessageStore(1000, 100);
    const e = s.addPending('c-1', 'Ada', 'lost', 0, 0);
    expect(s.retry(e.key, 'c-2', 0)).toBe(false);
    s.expire(200);
    expect(s.failedText(e.key)).toBe('lost');
    expect(s.retry(e.key, 'c-2', 300)).toBe(true);
    expect(s.items[0]?.delivery).toBe('pending');
    const { rtt } = s.receive(chat({ client_id: 'c-2', text: 'lost' }), true, 310);
    expect(rtt).toBe(10);
    expect(s.items).toHaveLength(1);
  });
});

describe('MessageStore hold while the reader is scrolled up', () => {
  it('trims to twice the cap while held and to the cap on release', () => {
    const s = new MessageStore(10);
    s.setHold(true);
    for (let i = 0; i < 25; i++) s.system(`s${i}`, 0);
    expect(s.items).toHaveLength(20);
    s.setHold(false);
    expect(s.items).toHaveLength(10);
    expect(s.items[0]?.text).toBe('s15');
  });
});
