/**
 * Link detection for chat text. The result is a list of plain segments that
 * the view renders as text nodes and `<a>` elements: chat text is never
 * turned into HTML, so no message can inject markup. Only `http:` and
 * `https:` URLs become links (no `javascript:`, `data:` or `file:`).
 */
export type Segment = { kind: 'text'; text: string } | { kind: 'link'; text: string; href: string };

const URL_START = /\bhttps?:\/\/[^\s<>"'`]+/gi;
/** Punctuation that usually ends a sentence rather than a URL. */
const TRAILING = /[.,;:!?'"»”’]+$/;

/** Splits `text` into text and link segments (concatenated, they give `text` back). */
export function linkify(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  for (const m of text.matchAll(URL_START)) {
    const start = m.index;
    let raw = m[0].replace(TRAILING, '');
    // A closing parenthesis belongs to the URL only when it opened one.
    while (raw.endsWith(')') && count(raw, '(') < count(raw, ')')) raw = raw.slice(0, -1).replace(TRAILING, '');
    const href = safeHref(raw);
    if (href === null) continue;
    if (start > last) out.push({ kind: 'text', text: text.slice(last, start) });
    out.push({ kind: 'link', text: raw, href });
    last = start + raw.length;
  }
  if (last < text.length) out.push({ kind: 'text', text: text.slice(last) });
  return out;
}

function count(s: string, ch: string): number {
  let n = 0;
  for (const c of s) if (c === ch) n += 1;
  return n;
}

/** The normalised URL when it parses as http(s) with a host, else null. */
export function safeHref(raw: string): string | null {
  try {
    const url = new URL(raw);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') return null;
    return url.href;
  } catch {
    return null;
  }
}
