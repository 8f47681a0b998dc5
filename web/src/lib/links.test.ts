import { describe, expect, it } from 'vitest';
import { linkify, safeHref } from './links';

describe('linkify', () => {
  it('leaves plain text alone', () => {
    expect(linkify('hello there')).toEqual([{ kind: 'text', text: 'hello there' }]);
    expect(linkify('')).toEqual([]);
  });

  it('finds http and https links and keeps the text around them', () => {
    expect(linkify('see https://example.com/a?b=1#c and http://x.org')).toEqual([
      { kind: 'text', text: 'see ' },
      { kind: 'link', text: 'https://example.com/a?b=1#c', href: 'https://example.com/a?b=1#c' },
      { kind: 'text', text: ' and ' },
      { kind: 'link', text: 'http://x.org', href: 'http://x.org/' },
    ]);
  });

  it('leaves sentence punctuation and unmatched parentheses outside the link', () => {
    const segs = linkify('(read https://en.wikipedia.org/wiki/Actor_(model)). Done.');
    expect(segs[1]).toEqual({
      kind: 'link',
      text: 'https://en.wikipedia.org/wiki/Actor_(model)',
      href: 'https://en.wikipedia.org/wiki/Actor_(model)',
    });
    expect(segs[2]).toEqual({ kind: 'text', text: '). Done.' });
  });

  it('never links other schemes, and cannot be made to emit markup', () => {
    for (const t of ['javascript:alert(1)', 'data:text/html,<b>x</b>', 'file:///etc/passwd', 'ftp://x.org']) {
      expect(linkify(t).every((s) => s.kind === 'text')).toBe(true);
    }
    const segs = linkify('https://x.org/"><script>alert(1)</script>');
    expect(segs[0]).toEqual({ kind: 'link', text: 'https://x.org/', href: 'https://x.org/' });
    expect(segs.map((s) => s.text).join('')).toBe('https://x.org/"><script>alert(1)</script>');
  });

  it('concatenates back to the input', () => {
    const t = 'a https://a.b/c, http://d.e/(f) g https://';
    expect(linkify(t).map((s) => s.text).join('')).toBe(t);
  });
});

describe('safeHref', () => {
  it('accepts only http(s) with a host', () => {
    expect(safeHref('https://a.b')).toBe('https://a.b/');
    expect(safeHref('https://')).toBeNull();
    expect(safeHref('javascript:alert(1)')).toBeNull();
  });
});
