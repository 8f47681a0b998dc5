/**
 * Presence as quiet system lines in the chat: "Ada joined", "Ada left",
 * "Ada is now Ada L". Updates are buffered and turned into at most three
 * lines per flush (one each for joins, leaves and renames), so a join storm
 * of 1,000 people becomes "A, B, C and 997 others joined", never 1,000 lines.
 *
 * Someone who joins and leaves within one flush is netted out: the room was
 * never visibly different for them.
 */
import type { Rename } from './protocol/Rename';

/** How many names a line spells out before "and N others". */
export const NAMES_SHOWN = 3;

/** "A", "A and B", "A, B and C", "A, B, C and 4 others". */
export function listNames(names: readonly string[], shown: number = NAMES_SHOWN): string {
  if (names.length <= shown) {
    if (names.length <= 1) return names[0] ?? '';
    return `${names.slice(0, -1).join(', ')} and ${names.at(-1) ?? ''}`;
  }
  const rest = names.length - shown;
  return `${names.slice(0, shown).join(', ')} and ${rest.toLocaleString('en-US')} other${rest === 1 ? '' : 's'}`;
}

export interface PresenceChange {
  joined: readonly string[];
  left: readonly string[];
  renamed: readonly Rename[];
}

export class PresenceBuffer {
  private joined: string[] = [];
  private left: string[] = [];
  private renamed: Rename[] = [];

  get empty(): boolean {
    return this.joined.length === 0 && this.left.length === 0 && this.renamed.length === 0;
  }

  add(change: PresenceChange): void {
    this.joined.push(...change.joined);
    this.renamed.push(...change.renamed);
    for (const name of change.left) {
      const i = this.joined.indexOf(name);
      if (i >= 0) this.joined.splice(i, 1);
      else this.left.push(name);
    }
  }

  /** The lines for everything buffered, and an empty buffer. */
  take(): string[] {
    const lines: string[] = [];
    if (this.joined.length > 0) lines.push(`${listNames(this.joined)} joined`);
    if (this.left.length > 0) lines.push(`${listNames(this.left)} left`);
    if (this.renamed.length > NAMES_SHOWN) {
      lines.push(`${this.renamed.length.toLocaleString('en-US')} people changed their names`);
    } else {
      for (const r of this.renamed) lines.push(`${r.from} is now ${r.to}`);
    }
    this.joined = [];
    this.left = [];
    this.renamed = [];
    return lines;
  }
}
