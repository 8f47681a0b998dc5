/**
 * Client-side copies of the server's name and room rules
 * (crates/protocol/src/limits.rs), so the UI can refuse before sending.
 * JavaScript counts UTF-16 code units, never fewer than the server's
 * characters, so these checks are at least as strict.
 */
export const MAX_NAME_CHARS = 32;
export const MAX_ROOM_CHARS = 64;
export const DEFAULT_ROOM = 'lobby';

/** The trimmed name, or a sentence saying why not. */
export function checkName(raw: string): { ok: true; name: string } | { ok: false; error: string } {
  const name = raw.trim();
  const chars = [...name].length;
  if (chars === 0) return { ok: false, error: 'A name needs at least one visible character.' };
  if (chars > MAX_NAME_CHARS) {
    return { ok: false, error: `A name has at most ${MAX_NAME_CHARS} characters.` };
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    return { ok: false, error: 'A name cannot contain control characters.' };
  }
  return { ok: true, name };
}

const ROOM = /^[A-Za-z0-9_-]{1,64}$/;

/** The app's sentence for a room name it cannot use. */
export const ROOM_RULE = 'A room name has 1 to 64 characters: letters, digits, "_" and "-".';

/** The room name typed into the switcher (an optional leading "#"), or a sentence saying why not. */
export function checkRoom(raw: string): { ok: true; room: string } | { ok: false; error: string } {
  const room = raw.trim().replace(/^#/, '');
  if (room === '') return { ok: false, error: 'Type a room name first.' };
  return isValidRoom(room) ? { ok: true, room } : { ok: false, error: ROOM_RULE };
}

export function isValidRoom(room: string): boolean {
  return ROOM.test(room);
}

/** The room named by a URL hash such as `#rust`, or the default room. */
export function roomFromHash(hash: string): string {
  const room = hash.replace(/^#\/?/, '');
  return isValidRoom(room) ? room : DEFAULT_ROOM;
}
