import { describe, expect, it } from 'vitest';
import { listNames, PresenceBuffer } from './presence';

describe('listNames', () => {
  it('spells out up to three names, then counts the rest', () => {
    expect(listNames(['A'])).toBe('A');
    expect(listNames(['A', 'B'])).toBe('A and B');
    expect(listNames(['A', 'B', 'C'])).toBe('A, B and C');
    expect(listNames(['A', 'B', 'C', 'D'])).toBe('A, B, C and 1 other');
    expect(listNames(['A', 'B', 'C', 'D', 'E'])).toBe('A, B, C and 2 others');
  });
});

describe('PresenceBuffer', () => {
  it('turns one update into joined, left and renamed lines', () => {
    const b = new PresenceBuffer();
    b.add({ joined: ['Ada'], left: ['Bob'], renamed: [{ from: 'guest-3', to: 'Grace' }] });
    expect(b.take()).toEqual(['Ada joined', 'Bob left', 'guest-3 is now Grace']);
    expect(b.empty).toBe(true);
    expect(b.take()).toEqual([]);
  });

  it('coalesces a join storm of 1,000 into one line', () => {
    const b = new PresenceBuffer();
    for (let i = 0; i < 100; i++) {
      b.add({ joined: Array.from({ length: 10 }, (_, j) => `bot-${i * 10 + j}`), left: [], renamed: [] });
    }
    expect(b.take()).toEqual(['bot-0, bot-1, bot-2 and 997 others joined']);
  });

  it('nets out someone who joined and left within one flush', () => {
    const b = new PresenceBuffer();
    b.add({ joined: ['Ada', 'Bob'], left: [], renamed: [] });
    b.add({ joined: [], left: ['Ada', 'Carol'], renamed: [] });
    expect(b.take()).toEqual(['Bob joined', 'Carol left']);
  });

  it('counts many renames instead of listing them', () => {
    const b = new PresenceBuffer();
    b.add({ joined: [], left: [], renamed: Array.from({ length: 5 }, (_, i) => ({ from: `a${i}`, to: `b${i}` })) });
    expect(b.take()).toEqual(['5 people changed their names']);
  });
});
