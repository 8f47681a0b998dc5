/** The tab title: the room, and unread messages while the tab is in the background. */
export function tabTitle(room: string, unread: number): string {
  const base = `#${room} · actorchat`;
  if (unread <= 0) return base;
  return `(${unread > 99 ? '99+' : unread}) ${base}`;
}
