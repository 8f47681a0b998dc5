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

/** Fields protocol v1 defines for each client frame type. */
const CLIENT_FIELDS: Record<string, string[]> = {
  chat: ['type', 'text', 'client_id', 'sent_at'],
  ping: ['type', 'nonce'],
  set_name: ['type', 'name'],
  join: ['type', 'room'],
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
});
