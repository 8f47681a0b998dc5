import { describe, expect, it } from 'vitest';
import { SseParser } from './sse';

describe('SseParser', () => {
  it('returns events as they complete, across chunk boundaries', () => {
    const p = new SseParser();
    expect(p.push('event: hello\ndata: {"a"')).toEqual([]);
    expect(p.push(':1}\n\nevent: snapshot\ndata: 2\n\n')).toEqual([
      { event: 'hello', data: '{"a":1}' },
      { event: 'snapshot', data: '2' },
    ]);
  });

  it('skips keep-alive comments and joins multi-line data', () => {
    const p = new SseParser();
    expect(p.push(':\n\ndata: a\r\ndata: b\r\n\r\n')).toEqual([{ event: 'message', data: 'a\nb' }]);
  });
});
