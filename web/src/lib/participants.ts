/**
 * Who is in the room, kept from `welcome` (the first ≤200 names) plus every
 * `room_update` (joined, renamed, left). Names are not unique, so this is a
 * multiset. `total` is always the server's count, which may exceed the names
 * known when the room is larger than the welcome list.
 *
 * The server guarantees that a `welcome` lists only members already
 * announced by an update, and announces every new member (us included) in a
 * later update, so applying welcome + updates never counts anyone twice
 * (docs/protocol.md, "Keeping a participant list").
 */
import type { RoomUpdate } from './protocol/RoomUpdate';
import type { Welcome } from './protocol/Welcome';

export class Participants {
  private readonly counts = new Map<string, number>();
  total = 0;

  reset(welcome: Pick<Welcome, 'participants' | 'num_participants'>): void {
    this.counts.clear();
    for (const name of welcome.participants) this.add(name);
    this.total = welcome.num_participants;
  }

  /** Applies a coalesced update: joins first, then renames, then leaves. */
  apply(update: Pick<RoomUpdate, 'joined' | 'left' | 'renamed' | 'num_participants'>): void {
    for (const name of update.joined) this.add(name);
    for (const r of update.renamed) {
      if (this.remove(r.from)) this.add(r.to);
    }
    for (const name of update.left) this.remove(name);
    this.total = update.num_participants;
  }

  /** Sorted names, repeated when several members share one. */
  list(): string[] {
    const out: string[] = [];
    for (const [name, n] of this.counts) {
      for (let i = 0; i < n; i++) out.push(name);
    }
    return out.sort((a, b) => a.localeCompare(b));
  }

  /** Members the server counted but never named to us (large rooms). */
  get unnamed(): number {
    let known = 0;
    for (const n of this.counts.values()) known += n;
    return Math.max(0, this.total - known);
  }

  private add(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  private remove(name: string): boolean {
    const n = this.counts.get(name);
    if (n === undefined) return false;
    if (n <= 1) this.counts.delete(name);
    else this.counts.set(name, n - 1);
    return true;
  }
}
