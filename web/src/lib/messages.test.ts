import { describe, expect, it } from 'vitest';
import { MessageStore, PENDING_TIMEOUT_MS } from './messages';
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
    expect(entry?.delivery).toBe('confirmed');
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
      chat({ id: 2, author: 'Ada', text: 'hello', client_id: 'c-1', sent_at: 5000 }),
      true,
      112.5,
    );
    expect(rtt).toBe(12.5);
    expect(entry?.delivery).toBe('confirmed');
    expect(entry?.rtt).toBe(12.5);
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
    expect(entry?.delivery).toBe('confirmed');
    expect(rtt).toBe(21_000);
    expect(s.items).toHaveLength(1);
  });

  it('treats an unknown client_id as an ordinary message', () => {
    const s = new MessageStore();
    const { entry, rtt } = s.receive(chat({ client_id: 'someone-else-1' }), false, 0);
    expect(rtt).toBeNull();
    expect(entry?.delivery).toBeNull();
    expect(entry?.own).toBe(false);
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
    expect(entry?.calc).toEqual(calc);
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

describe('MessageStore history', () => {
  const never = (): boolean => false;
  const texts = (s: MessageStore): string[] => s.items.map((e) => e.text);
  const keysIncrease = (s: MessageStore): boolean => s.items.every((e, i) => i === 0 || e.key > (s.items[i - 1]?.key ?? 0));

  it('shows each id once, whether it comes live or replayed', () => {
    const s = new MessageStore();
    expect(s.replay([chat({ id: 1, text: 'a' }), chat({ id: 2, text: 'b' })], never, 'earlier')).toBe(2);
    expect(s.receive(chat({ id: 2, text: 'b' }), false, 0).entry).toBeNull();
    expect(s.replay([chat({ id: 2, text: 'b' }), chat({ id: 3, text: 'c' }), chat({ id: 3, text: 'c' })], never, 'missed')).toBe(1);
    expect(texts(s)).toEqual(['a', 'b', 'c']);
    expect(s.items.map((e) => [e.id, e.origin])).toEqual([
      [1, 'earlier'],
      [2, 'earlier'],
      [3, 'missed'],
    ]);
  });

  it('puts replayed messages before own messages still waiting, keeping keys in order', () => {
    const s = new MessageStore();
    s.receive(chat({ id: 1, text: 'seen' }), false, 0);
    s.system('disconnected', 0);
    s.addQueued('Ada', 'typed offline', 0);
    s.replay([chat({ id: 2, text: 'missed' })], never, 'missed');
    expect(texts(s)).toEqual(['seen', 'disconnected', 'missed', 'typed offline']);
    expect(keysIncrease(s)).toBe(true);
    // The queued message is still the one sent next.
    const sent: string[] = [];
    s.sendQueued((t) => {
      sent.push(t);
      return 'c-9';
    }, 0);
    expect(sent).toEqual(['typed offline']);
    expect(s.items.at(-1)?.delivery).toBe('pending');
  });

  it('moves waiting messages below system lines written after them, and keeps them queued', () => {
    const s = new MessageStore();
    s.receive(chat({ id: 1, text: 'seen' }), false, 0);
    s.addQueued('Ada', 'q1', 0);
    s.system('Bot left', 0);
    s.addQueued('Ada', 'q2', 0);
    s.replay([chat({ id: 2, text: 'missed' })], never, 'missed');
    expect(texts(s)).toEqual(['seen', 'Bot left', 'missed', 'q1', 'q2']);
    expect(keysIncrease(s)).toBe(true);
    const sent: string[] = [];
    expect(
      s.sendQueued((t) => {
        sent.push(t);
        return `c-${t}`;
      }, 0),
    ).toBe(2);
    expect(sent).toEqual(['q1', 'q2']);
  });

  it('leaves an old failed message above the newest stored one where it is', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'old failure', 0, 0);
    s.expire(PENDING_TIMEOUT_MS);
    s.receive(chat({ id: 1, text: 'later' }), false, 0);
    s.replay([chat({ id: 2, text: 'missed' })], never, 'missed');
    expect(texts(s)).toEqual(['old failure', 'later', 'missed']);
  });

  it('confirms an own message whose echo was lost with the connection, without a round trip, in its place', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'mine', 0, 0);
    s.system('disconnected', 0);
    const own = (m: ChatMessage): boolean => m.client_id === 'c-1';
    s.replay([chat({ id: 5, text: 'other' }), chat({ id: 6, author: 'Ada', text: 'mine', client_id: 'c-1' })], own, 'missed');
    expect(s.items.map((e) => [e.text, e.delivery, e.rtt, e.id])).toEqual([
      ['disconnected', null, null, null],
      ['other', null, null, 5],
      ['mine', 'confirmed', null, 6],
    ]);
    expect(s.pendingCount).toBe(0);
    // Its late live echo (if any) is a duplicate.
    expect(s.receive(chat({ id: 6, client_id: 'c-1' }), true, 50).rtt).toBeNull();
    expect(s.items).toHaveLength(3);
  });

  it('keeps a pending message waiting at the end pending after a replay without it', () => {
    const s = new MessageStore();
    s.addPending('c-1', 'Ada', 'mine', 100, 0);
    s.replay([chat({ id: 5, text: 'other' })], never, 'missed');
    expect(texts(s)).toEqual(['other', 'mine']);
    expect(s.pendingCount).toBe(1);
    const { entry, rtt } = s.receive(chat({ id: 6, text: 'mine', client_id: 'c-1' }), true, 112);
    expect([entry?.delivery, rtt]).toEqual(['confirmed', 12]);
  });

  it('prepends older pages in front with lower keys and only older ids', () => {
    const s = new MessageStore();
    s.replay([chat({ id: 51, text: 'm51' }), chat({ id: 52, text: 'm52' })], never, 'earlier');
    expect(s.oldestId).toBe(51);
    expect(s.prepend([chat({ id: 49, text: 'm49' }), chat({ id: 50, text: 'm50' }), chat({ id: 51, text: 'dup' })], never)).toBe(2);
    expect(texts(s)).toEqual(['m49', 'm50', 'm51', 'm52']);
    expect(s.items[0]?.origin).toBe('earlier');
    expect(keysIncrease(s)).toBe(true);
    expect(s.oldestId).toBe(49);
    // Lookups by key still work on prepended rows.
    s.addPending('c-1', 'Ada', 'x', 0, 0);
    expect(s.expire(PENDING_TIMEOUT_MS)).toBe(1);
  });

  it('prepends no more than fits, the newest of the page first', () => {
    const s = new MessageStore(4);
    s.replay([chat({ id: 10, text: 'm10' }), chat({ id: 11, text: 'm11' })], never, 'earlier');
    expect(s.space).toBe(2);
    expect(s.prepend([7, 8, 9].map((id) => chat({ id, text: `m${id}` })), never)).toBe(2);
    expect(texts(s)).toEqual(['m8', 'm9', 'm10', 'm11']);
    expect(s.space).toBe(0);
    s.setHold(true);
    expect(s.space).toBe(4);
  });

  it('forgets the room start once trimming drops a message', () => {
    const s = new MessageStore(2);
    s.replay([chat({ id: 1, text: 'a' })], never, 'earlier');
    s.markStart();
    s.system('joined', 0);
    expect(s.atStart).toBe(true);
    s.system('another', 0);
    expect(s.atStart).toBe(false);
    expect(s.has(1)).toBe(false);
  });

  it('clears for another room keeping queued messages, for the same room keeping waiting ones', () => {
    const s = new MessageStore();
    s.receive(chat({ id: 1 }), false, 0);
    s.addPending('c-1', 'Ada', 'pending', 0, 0);
    s.addQueued('Ada', 'queued', 0);
    s.markStart();
    s.clear(true);
    expect(texts(s)).toEqual(['pending', 'queued']);
    expect([s.atStart, s.has(1), s.pendingCount, s.queuedCount]).toEqual([false, false, 1, 1]);
    expect(s.receive(chat({ id: 9, text: 'pending', client_id: 'c-1' }), true, 4).rtt).toBe(4);
    s.clear();
    expect(texts(s)).toEqual(['queued']);
    expect(s.queuedCount).toBe(1);
  });

  it('fails the oldest pending message at once when the server could not store it', () => {
    const s = new MessageStore();
    expect(s.failOldestPending()).toBeNull();
    const first = s.addPending('c-1', 'Ada', 'one', 10, 0);
    s.addPending('c-2', 'Ada', 'two', 20, 0);
    expect(s.failOldestPending()).toBe(first.key);
    expect(s.items.map((e) => e.delivery)).toEqual(['failed', 'pending']);
    expect(s.failedText(first.key)).toBe('one');
  });
});

describe('MessageStore verified authors', () => {
  it('carries each author\'s user id through live frames, replays, scroll-back and echoes; guests have none', () => {
    const s = new MessageStore();
    s.replay([chat({ id: 1, author: 'Ada', user_id: 'ada' }), chat({ id: 2 })], () => false, 'earlier');
    s.prepend([chat({ id: 0, author: 'Ada', user_id: 'ada' })], () => false);
    s.receive(chat({ id: 3, author: 'Linus', user_id: 'u-7' }), false, 0);
    s.system('Grace left.', 0);
    expect(s.items.map((e) => [e.author, e.userId])).toEqual([
      ['Ada', 'ada'],
      ['Ada', 'ada'],
      ['Grace', null],
      ['Linus', 'u-7'],
      ['', null],
    ]);
  });

  it('shows an own message under the writer\'s id at once, and takes the echo\'s', () => {
    const s = new MessageStore();
    expect(s.addQueued('Ada', 'later', 0, 'ada').userId).toBe('ada');
    const pending = s.addPending('c-1', 'Ada', 'now', 0, 0, 'ada');
    expect(pending.userId).toBe('ada');
    // The server stamps what it knows: a session that became a guest meanwhile has none.
    const { entry } = s.receive(chat({ id: 5, author: 'Ada', text: 'now', client_id: 'c-1' }), true, 1);
    expect(entry?.userId).toBeNull();
  });
});
