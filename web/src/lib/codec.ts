/**
 * The only place where wire text becomes typed values and back.
 *
 * `decode` trusts nothing: it checks the shape of every field of every server
 * frame by hand and builds a fresh object holding only the known fields, so
 * the rest of the client can rely on the generated types in `./protocol/`.
 * It never throws; a bad frame becomes `{ ok: false, error }`, which the UI
 * shows as a notice. Unknown extra fields are ignored, as protocol v1 promises.
 */
import type { CalcResult } from './protocol/CalcResult';
import type { CalcStatus } from './protocol/CalcStatus';
import type { ChatFrame } from './protocol/ChatFrame';
import type { ChatMessage } from './protocol/ChatMessage';
import type { ClientFrame } from './protocol/ClientFrame';
import type { ErrorCode } from './protocol/ErrorCode';
import type { Limits } from './protocol/Limits';
import type { Rename } from './protocol/Rename';
import type { ServerFrame } from './protocol/ServerFrame';

export type DecodeResult = { ok: true; frame: ServerFrame } | { ok: false; error: string };

/** Serializes a client frame, writing only the fields the protocol defines. */
export function encode(frame: ClientFrame): string {
  switch (frame.type) {
    case 'chat': {
      const out: ClientFrame = { type: 'chat', text: frame.text };
      if (frame.client_id !== undefined) out.client_id = frame.client_id;
      if (frame.sent_at !== undefined) out.sent_at = frame.sent_at;
      return JSON.stringify(out);
    }
    case 'ping':
      return JSON.stringify({ type: 'ping', nonce: frame.nonce });
    case 'set_name':
      return JSON.stringify({ type: 'set_name', name: frame.name });
    case 'join':
      return JSON.stringify(
        frame.since === undefined
          ? { type: 'join', room: frame.room }
          : { type: 'join', room: frame.room, since: { id: frame.since.id, epoch: frame.since.epoch } },
      );
    case 'history':
      return JSON.stringify({ type: 'history', before: frame.before, limit: frame.limit });
    case 'refresh':
      return JSON.stringify({ type: 'refresh', token: frame.token });
  }
}

/** Parses and validates one text frame from the server. Never throws. */
export function decode(text: string): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: `not JSON: ${preview(text)}` };
  }
  try {
    return { ok: true, frame: serverFrame(value) };
  } catch (e) {
    // Only ShapeError is expected, but a decoder must not take the tab down.
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

const ERROR_CODES: readonly ErrorCode[] = [
  'invalid_json',
  'unknown_type',
  'invalid_field',
  'text_too_long',
  'rate_limited',
  'invalid_name',
  'invalid_room',
  'calc_busy',
  'room_limit',
  'room_busy',
  'unavailable',
  'forbidden',
  'invalid_token',
];
const CALC_STATUSES: readonly CalcStatus[] = ['ok', 'rejected', 'timeout', 'busy', 'error'];

/** A shape violation; caught in `decode` and turned into its error string. */
class ShapeError extends Error {}

type Obj = Record<string, unknown>;

function serverFrame(v: unknown): ServerFrame {
  const o = object(v, 'frame');
  const type = str(o, 'type');
  switch (type) {
    case 'welcome':
      return {
        type,
        session_id: uint(o, 'session_id'),
        name: str(o, 'name'),
        room: str(o, 'room'),
        num_participants: uint(o, 'num_participants'),
        participants: strings(o, 'participants'),
        limits: limits(object(o.limits, 'limits')),
        epoch: str(o, 'epoch'),
        last_id: uint(o, 'last_id'),
        recovered: nullable(o, 'recovered', bool),
        user_id: nullable(o, 'user_id', str),
        history: chatFrames(o, 'history'),
      };
    case 'chat':
      return { type, ...chat(o) };
    case 'room_update':
      return {
        type,
        room: str(o, 'room'),
        num_participants: uint(o, 'num_participants'),
        joined: strings(o, 'joined'),
        left: strings(o, 'left'),
        // `renamed` is an additive extension to v1 (serde default on the server).
        renamed: o.renamed === undefined ? [] : renames(o),
      };
    case 'pong':
      return { type, nonce: uint(o, 'nonce'), server_time: uint(o, 'server_time') };
    case 'error':
      return { type, code: oneOf(o, 'code', ERROR_CODES), message: str(o, 'message') };
    case 'history':
      return { type, room: str(o, 'room'), messages: chatFrames(o, 'messages'), has_more: bool(o, 'has_more') };
    case 'refreshed':
      return { type, expires_at: uint(o, 'expires_at') };
    default:
      throw new ShapeError(`unknown frame type ${JSON.stringify(type)}`);
  }
}

function chat(o: Obj): ChatMessage {
  const m: ChatMessage = {
    id: uint(o, 'id'),
    room: str(o, 'room'),
    author: str(o, 'author'),
    text: str(o, 'text'),
    client_id: nullable(o, 'client_id', str),
    sent_at: nullable(o, 'sent_at', uint),
    server_time: uint(o, 'server_time'),
    calc: o.calc === null || o.calc === undefined ? null : calc(object(o.calc, 'calc')),
  };
  // A guest's chat has no `user_id` key (so a server without `--auth` sends
  // the frames it always sent); the decoded frame keeps that shape, and a
  // null is a guest's too.
  const userId = nullable(o, 'user_id', str);
  if (userId !== null) m.user_id = userId;
  return m;
}

/** An array of `chat` frames (`welcome.history`, `history.messages`). */
function chatFrames(o: Obj, key: string): ChatFrame[] {
  const list = o[key];
  if (!Array.isArray(list)) throw new ShapeError(`"${key}" must be an array`);
  return list.map((item: unknown) => {
    const m = object(item, `${key}[]`);
    if (m.type !== 'chat') throw new ShapeError(`"${key}" must hold chat frames`);
    return { type: 'chat', ...chat(m) };
  });
}

function calc(o: Obj): CalcResult {
  return {
    id: str(o, 'id'),
    expr: str(o, 'expr'),
    status: oneOf(o, 'status', CALC_STATUSES),
    value: nullable(o, 'value', str),
    digits: nullable(o, 'digits', uint),
    truncated: bool(o, 'truncated'),
    elapsed_ms: uint(o, 'elapsed_ms'),
    reason: nullable(o, 'reason', str),
  };
}

function limits(o: Obj): Limits {
  return {
    max_text_chars: uint(o, 'max_text_chars'),
    max_frame_bytes: uint(o, 'max_frame_bytes'),
    max_messages_per_sec: uint(o, 'max_messages_per_sec'),
  };
}

function renames(o: Obj): Rename[] {
  const list = o.renamed;
  if (!Array.isArray(list)) throw new ShapeError('"renamed" must be an array');
  return list.map((item: unknown) => {
    const r = object(item, 'renamed[]');
    return { from: str(r, 'from'), to: str(r, 'to') };
  });
}

function object(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ShapeError(`${what} must be a JSON object`);
  }
  return v as Obj;
}

function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ShapeError(`"${key}" must be a string`);
  return v;
}

function bool(o: Obj, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new ShapeError(`"${key}" must be true or false`);
  return v;
}

/** A non-negative integer a JavaScript number holds exactly (Rust u32/u64 ≤ 2^53). */
function uint(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** 53) {
    throw new ShapeError(`"${key}" must be a non-negative integer`);
  }
  return v;
}

function strings(o: Obj, key: string): string[] {
  const v = o[key];
  if (!Array.isArray(v) || !v.every((s: unknown) => typeof s === 'string')) {
    throw new ShapeError(`"${key}" must be an array of strings`);
  }
  return v as string[];
}

function nullable<T>(o: Obj, key: string, read: (o: Obj, key: string) => T): T | null {
  return o[key] === null || o[key] === undefined ? null : read(o, key);
}

function oneOf<T extends string>(o: Obj, key: string, allowed: readonly T[]): T {
  const v = str(o, key);
  const found = allowed.find((a) => a === v);
  if (found === undefined) throw new ShapeError(`unknown ${key} ${JSON.stringify(v)}`);
  return found;
}

function preview(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
