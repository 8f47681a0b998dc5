import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decode, encode } from './codec';
import type { ClientFrame } from './protocol/ClientFrame';

/** The shared vectors the Rust tests read too (crates/protocol/vectors/). */
function vectors(file: string): unknown {
  const url = new URL(`../../../crates/protocol/vectors/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8'));
}

interface ServerVectors {
  valid: { name: string; frame: Record<string, unknown> }[];
  invalid: { name: string; raw: string }[];
}
interface ClientVectors {
  valid: { name: string; frame: Record<string, unknown> }[];
}

const server = vectors('server_frames.json') as ServerVectors;
const client = vectors('client_frames.json') as ClientVectors;

/** Fields the protocol defines for each client frame type. */
const CLIENT_FIELDS: Record<string, string[]> = {
  chat: ['type', 'text', 'client_id', 'sent_at'],
  ping: ['type', 'nonce'],
  set_name: ['type', 'name'],
  join: ['type', 'room', 'since'],
  history: ['type', 'before', 'limit'],
  refresh: ['type', 'token'],
};

describe('decode: shared server vectors', () => {
  it('has vectors to test', () => {
    expect(server.valid.length).toBeGreaterThan(0);
    expect(server.invalid.length).toBeGreaterThan(0);
  });

  it.each(server.valid.map((c) => [c.name, c] as const))('valid: %s', (_name, c) => {
    const result = decode(JSON.stringify(c.frame));
    expect(result).toEqual({ ok: true, frame: c.frame });
  });

  it.each(server.invalid.map((c) => [c.name, c] as const))('invalid: %s', (_name, c) => {
    const result = decode(c.raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatch(/\S/);
  });
});

describe('decode: more shapes', () => {
  const chat = {
    type: 'chat',
    id: 1,
    room: 'lobby',
    author: 'a',
    text: 't',
    client_id: null,
    sent_at: null,
    server_time: 1,
    calc: null,
  };

  const welcome = {
    type: 'welcome',
    session_id: 1,
    name: 'a',
    room: 'lobby',
    num_participants: 1,
    participants: [],
    limits: { max_text_chars: 1, max_frame_bytes: 1, max_messages_per_sec: 1 },
    epoch: 'e1',
    last_id: 1,
    recovered: null,
    user_id: null,
    history: [chat],
  };

  it('decodes a welcome with its history and a resume verdict', () => {
    expect(decode(JSON.stringify(welcome))).toEqual({ ok: true, frame: welcome });
    const resumed = { ...welcome, recovered: true, history: [] };
    expect(decode(JSON.stringify(resumed))).toEqual({ ok: true, frame: resumed });
  });

  it('keeps a verified author\'s user_id and leaves a guest\'s chat without the key', () => {
    const verified = { ...chat, user_id: 'u-1' };
    expect(decode(JSON.stringify(verified))).toEqual({ ok: true, frame: verified });
    const guest = decode(JSON.stringify(chat));
    expect(guest.ok && 'user_id' in guest.frame).toBe(false);
    // A null is a guest's too: no key, as the server sends it.
    const nulled = decode(JSON.stringify({ ...chat, user_id: null }));
    expect(nulled.ok && 'user_id' in nulled.frame).toBe(false);
    const page = { type: 'history', room: 'lobby', messages: [{ ...verified, type: 'chat' }], has_more: false };
    expect(decode(JSON.stringify(page))).toEqual({ ok: true, frame: page });
  });

  it('reads a welcome\'s user_id, and one from a server that predates it as a guest\'s', () => {
    const verified = { ...welcome, user_id: 'ada' };
    expect(decode(JSON.stringify(verified))).toEqual({ ok: true, frame: verified });
    expect(decode(JSON.stringify({ ...welcome, user_id: undefined }))).toEqual({ ok: true, frame: welcome });
  });

  it('decodes refreshed and the identity error codes', () => {
    const refreshed = { type: 'refreshed', expires_at: 1_796_000_000 };
    expect(decode(JSON.stringify(refreshed))).toEqual({ ok: true, frame: refreshed });
    for (const code of ['forbidden', 'invalid_token']) {
      const e = { type: 'error', code, message: 'No.' };
      expect(decode(JSON.stringify(e))).toEqual({ ok: true, frame: e });
    }
  });

  it('drops unknown fields inside history frames too', () => {
    const page = { type: 'history', room: 'lobby', messages: [{ ...chat, extra: 1 }], has_more: true };
    expect(decode(JSON.stringify(page))).toEqual({ ok: true, frame: { ...page, messages: [chat] } });
  });

  it('ignores unknown extra fields and drops them from the result', () => {
    const result = decode(JSON.stringify({ ...chat, extra: { deep: true } }));
    expect(result).toEqual({ ok: true, frame: chat });
  });

  it('defaults a missing room_update.renamed to an empty list', () => {
    const result = decode(
      JSON.stringify({ type: 'room_update', room: 'r', num_participants: 1, joined: [], left: [] }),
    );
    expect(result.ok && result.frame.type === 'room_update' && result.frame.renamed).toEqual([]);
  });

  it.each([
    ['null', 'null'],
    ['array', '[]'],
    ['string', '"chat"'],
    ['number', '42'],
    ['empty', ''],
    ['missing type', '{}'],
    ['negative id', JSON.stringify({ ...chat, id: -1 })],
    ['fractional id', JSON.stringify({ ...chat, id: 1.5 })],
    ['id above 2^53', JSON.stringify({ ...chat, id: 2 ** 53 + 2 })],
    ['author missing', JSON.stringify({ ...chat, author: undefined })],
    ['calc not an object', JSON.stringify({ ...chat, calc: 'x' })],
    ['welcome without limits', '{"type":"welcome","session_id":1,"name":"a","room":"r","num_participants":1,"participants":[]}'],
    ['participants not strings', '{"type":"welcome","session_id":1,"name":"a","room":"r","num_participants":1,"participants":[1],"limits":{"max_text_chars":1,"max_frame_bytes":1,"max_messages_per_sec":1}}'],
    ['welcome without epoch', JSON.stringify({ ...welcome, epoch: undefined })],
    ['welcome recovered not a boolean', JSON.stringify({ ...welcome, recovered: 'yes' })],
    ['welcome history not a list', JSON.stringify({ ...welcome, history: {} })],
    ['welcome history holding a non-chat frame', JSON.stringify({ ...welcome, history: [{ ...chat, type: 'pong' }] })],
    ['welcome history holding a bad chat', JSON.stringify({ ...welcome, history: [{ ...chat, id: -1 }] })],
    ['history page without has_more', JSON.stringify({ type: 'history', room: 'r', messages: [] })],
    ['history page messages not a list', JSON.stringify({ type: 'history', room: 'r', messages: 1, has_more: false })],
    ['chat user_id not a string', JSON.stringify({ ...chat, user_id: 7 })],
    ['welcome user_id not a string', JSON.stringify({ ...welcome, user_id: true })],
    ['refreshed without expires_at', '{"type":"refreshed"}'],
    ['refreshed expires_at negative', '{"type":"refreshed","expires_at":-1}'],
    ['refreshed expires_at a string', '{"type":"refreshed","expires_at":"1796000000"}'],
    ['renamed not a list', '{"type":"room_update","room":"r","num_participants":1,"joined":[],"left":[],"renamed":{}}'],
    ['huge nesting', '['.repeat(100_000)],
  ])('refuses %s without throwing', (_name, raw) => {
    expect(decode(raw).ok).toBe(false);
  });
});

describe('encode: shared client vectors', () => {
  it.each(client.valid.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const frame = c.frame as unknown as ClientFrame;
    const fields = CLIENT_FIELDS[frame.type] ?? [];
    const expected = Object.fromEntries(Object.entries(c.frame).filter(([k]) => fields.includes(k)));
    expect(JSON.parse(encode(frame))).toEqual(expected);
  });

  it('omits absent optional chat fields', () => {
    expect(encode({ type: 'chat', text: 'hi' })).toBe('{"type":"chat","text":"hi"}');
  });

  it('writes a join with and without a resume point', () => {
    expect(encode({ type: 'join', room: 'r' })).toBe('{"type":"join","room":"r"}');
    expect(encode({ type: 'join', room: 'r', since: { id: 4, epoch: 'e' } })).toBe(
      '{"type":"join","room":"r","since":{"id":4,"epoch":"e"}}',
    );
  });

  it('writes a refresh with its token exactly as given', () => {
    expect(encode({ type: 'refresh', token: 'a.b.c' })).toBe('{"type":"refresh","token":"a.b.c"}');
  });

  it('writes a scroll-back request', () => {
    expect(encode({ type: 'history', before: 41, limit: 50 })).toBe('{"type":"history","before":41,"limit":50}');
  });
});
