import { describe, expect, it } from 'vitest';
import {
  askIdentity,
  bearer,
  expiredLine,
  grantedRoom,
  readIdentity,
  roomGranted,
  splitHash,
  takeToken,
  timeLeft,
  TOKEN_KEY,
  TokenStore,
  type FetchLike,
} from './identity';

const ADA = { user_id: 'ada', name: 'Ada', rooms: null, admin: false, expires_at: 1_796_000_000 };

describe('splitHash', () => {
  it('finds the token anywhere in the fragment and leaves the room', () => {
    expect(splitHash('#token=a.b.c')).toEqual({ token: 'a.b.c', rest: '' });
    expect(splitHash('#rust&token=a.b.c')).toEqual({ token: 'a.b.c', rest: 'rust' });
    expect(splitHash('#token=a.b.c&rust')).toEqual({ token: 'a.b.c', rest: 'rust' });
    expect(splitHash('#rust')).toEqual({ token: null, rest: 'rust' });
    expect(splitHash('')).toEqual({ token: null, rest: '' });
  });

  it('decodes an encoded token and keeps a malformed one as it is', () => {
    expect(splitHash('#token=a%2Bb.c')).toEqual({ token: 'a+b.c', rest: '' });
    expect(splitHash('#token=a%zz')).toEqual({ token: 'a%zz', rest: '' });
    expect(splitHash('#token=')).toEqual({ token: '', rest: '' });
  });
});

describe('takeToken', () => {
  function bar(hash: string) {
    const replaced: string[] = [];
    return { replaced, bar: { hash, pathname: '/', search: '?x=1', replace: (u: string) => replaced.push(u) } };
  }

  it('removes the token from the address, keeping path, query and room', () => {
    const a = bar('#token=t1');
    expect(takeToken(a.bar)).toBe('t1');
    expect(a.replaced).toEqual(['/?x=1']);
    const b = bar('#rust&token=t2');
    expect(takeToken(b.bar)).toBe('t2');
    expect(b.replaced).toEqual(['/?x=1#rust']);
  });

  it('leaves an address without a token alone', () => {
    const a = bar('#rust');
    expect(takeToken(a.bar)).toBeNull();
    expect(a.replaced).toEqual([]);
  });
});

describe('TokenStore', () => {
  it('keeps the token in the given storage', () => {
    const map = new Map<string, string>();
    const store = new TokenStore({
      getItem: (k) => map.get(k) ?? null,
      setItem: (k, v) => void map.set(k, v),
      removeItem: (k) => void map.delete(k),
    });
    expect(store.get()).toBeNull();
    store.set('t1');
    expect(map.get(TOKEN_KEY)).toBe('t1');
    expect(new TokenStore({ getItem: (k) => map.get(k) ?? null, setItem: () => {}, removeItem: () => {} }).get()).toBe('t1');
    store.clear();
    expect(store.get()).toBeNull();
  });

  it('falls back to memory when storage refuses', () => {
    const refusing = {
      getItem: (): string | null => {
        throw new Error('denied');
      },
      setItem: (): void => {
        throw new Error('denied');
      },
      removeItem: (): void => {
        throw new Error('denied');
      },
    };
    const store = new TokenStore(refusing);
    store.set('t1');
    expect(store.get()).toBe('t1');
    const none = new TokenStore(null);
    none.set('t2');
    expect(none.get()).toBe('t2');
  });
});

describe('readIdentity', () => {
  it('reads a guest and a verified user', () => {
    expect(readIdentity(200, '{"auth":"optional","user":null}')).toEqual({ kind: 'known', auth: 'optional', user: null });
    expect(readIdentity(200, JSON.stringify({ auth: 'required', user: { ...ADA, rooms: ['team-*'], extra: 1 } }))).toEqual({
      kind: 'known',
      auth: 'required',
      user: { ...ADA, rooms: ['team-*'] },
    });
  });

  it('passes the server\'s sentence on for a refusal', () => {
    expect(readIdentity(401, 'The token has expired.\n')).toEqual({ kind: 'refused', status: 401, message: 'The token has expired.' });
    expect(readIdentity(403, '')).toEqual({ kind: 'refused', status: 403, message: 'The server refused the token (HTTP 403).' });
  });

  it.each([
    ['a 5xx', 503, 'busy'],
    ['an older server\'s page', 200, '<!doctype html><html></html>'],
    ['an unknown mode', 200, '{"auth":"maybe","user":null}'],
    ['a user without an id', 200, JSON.stringify({ auth: 'optional', user: { ...ADA, user_id: 7 } })],
    ['rooms that are not names', 200, JSON.stringify({ auth: 'optional', user: { ...ADA, rooms: [1] } })],
    ['a fractional expiry', 200, JSON.stringify({ auth: 'optional', user: { ...ADA, expires_at: 1.5 } })],
    ['an array', 200, '[]'],
  ])('treats %s as no answer', (_name, status, body) => {
    expect(readIdentity(status, body).kind).toBe('unavailable');
  });
});

describe('askIdentity', () => {
  it('presents the token as a bearer and never caches', async () => {
    const calls: { url: string; headers: Record<string, string>; cache: string }[] = [];
    const fetchFn: FetchLike = (url, init) => {
      calls.push({ url, ...init });
      return Promise.resolve({ status: 200, text: () => Promise.resolve('{"auth":"optional","user":null}') });
    };
    await askIdentity(fetchFn, 'a.b.c');
    await askIdentity(fetchFn, null);
    expect(calls).toEqual([
      { url: '/api/identity', headers: { Authorization: 'Bearer a.b.c' }, cache: 'no-store' },
      { url: '/api/identity', headers: {}, cache: 'no-store' },
    ]);
  });

  it('turns a network failure into no answer', async () => {
    const answer = await askIdentity(() => Promise.reject(new TypeError('Failed to fetch')), 't');
    expect(answer.kind).toBe('unavailable');
  });

  it('headers for other requests present the same token', () => {
    expect(bearer('t')).toEqual({ Authorization: 'Bearer t' });
    expect(bearer('')).toEqual({});
  });
});

describe('rooms', () => {
  it('grants rooms as the server does: names, prefixes and everything', () => {
    expect(roomGranted(null, 'any')).toBe(true);
    expect(roomGranted(['lobby', 'team-*'], 'team-a')).toBe(true);
    expect(roomGranted(['lobby', 'team-*'], 'team')).toBe(false);
    expect(roomGranted(['lobby'], 'lobby2')).toBe(false);
    expect(roomGranted(['*'], 'x')).toBe(true);
    expect(roomGranted([], 'lobby')).toBe(false);
  });

  it('picks the default room if granted, else the first name listed', () => {
    expect(grantedRoom(['lob*'], 'lobby')).toBe('lobby');
    expect(grantedRoom(['team-*', 'general'], 'lobby')).toBe('general');
    expect(grantedRoom(['team-*'], 'lobby')).toBeNull();
  });
});

describe('time words', () => {
  it('says how long is left', () => {
    const now = 1_000_000 * 1000;
    expect(timeLeft(1_000_000 - 5, now)).toBe('now');
    expect(timeLeft(1_000_040, now)).toBe('in 40 s');
    expect(timeLeft(1_000_000 + 9 * 60 + 30, now)).toBe('in 9 min');
    expect(timeLeft(1_000_000 + 3600, now)).toBe('in 1 h');
    expect(timeLeft(1_000_000 + 2 * 3600 + 15 * 60, now)).toBe('in 2 h 15 min');
  });

  it('says the session expired and how to continue', () => {
    expect(expiredLine(null)).toMatch(/^Your session expired, so you are no longer connected\. To continue, open .*#token=/);
    expect(expiredLine(1_796_000_000)).toMatch(/^Your session expired at \d\d:\d\d:\d\d/);
  });
});
