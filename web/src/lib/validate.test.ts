import { describe, expect, it } from 'vitest';
import { checkName, checkRoom, isValidRoom, roomFromHash, ROOM_RULE } from './validate';

describe('names and rooms (mirrors crates/protocol/src/limits.rs)', () => {
  it('trims names and refuses empty, long and control-character names', () => {
    expect(checkName('  ada  ')).toEqual({ ok: true, name: 'ada' });
    expect(checkName('é'.repeat(32)).ok).toBe(true);
    expect(checkName('é'.repeat(33)).ok).toBe(false);
    expect(checkName('   ').ok).toBe(false);
    expect(checkName('a\u0007b').ok).toBe(false);
    expect(checkName('a\nb').ok).toBe(false);
  });

  it('accepts only A-Z a-z 0-9 _ - rooms of 1 to 64 characters', () => {
    expect(isValidRoom('rust-2024_x')).toBe(true);
    expect(isValidRoom('a'.repeat(64))).toBe(true);
    expect(isValidRoom('a'.repeat(65))).toBe(false);
    expect(isValidRoom('has space')).toBe(false);
    expect(isValidRoom('ünï')).toBe(false);
    expect(isValidRoom('')).toBe(false);
  });

  it('reads the room from the URL hash', () => {
    expect(roomFromHash('#rust')).toBe('rust');
    expect(roomFromHash('#/rust')).toBe('rust');
    expect(roomFromHash('')).toBe('lobby');
    expect(roomFromHash('#not valid')).toBe('lobby');
    expect(roomFromHash('#%E0%A4%A')).toBe('lobby');
  });
});

describe('checkRoom', () => {
  it("answers with the app's own sentences", () => {
    expect(checkRoom(' #rust ')).toEqual({ ok: true, room: 'rust' });
    expect(checkRoom('')).toEqual({ ok: false, error: 'Type a room name first.' });
    expect(checkRoom('no spaces')).toEqual({ ok: false, error: ROOM_RULE });
  });
});
