import { describe, expect, it } from 'vitest';
import { tabTitle } from './title';

describe('tabTitle', () => {
  it('shows the room and the unread count', () => {
    expect(tabTitle('rust', 0)).toBe('#rust · actorchat');
    expect(tabTitle('rust', 3)).toBe('(3) #rust · actorchat');
    expect(tabTitle('rust', 500)).toBe('(99+) #rust · actorchat');
  });
});
