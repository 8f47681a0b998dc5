/**
 * Calculation helpers. A chat text such as `200!` is computed by the server's
 * calculator and broadcast with a `calc` result once done, so the only
 * "computing" state a client can see is its own message still waiting for
 * that broadcast.
 */
import type { CalcResult } from './protocol/CalcResult';

/** The inputs the hint links offer. */
export const CALC_HINTS = ['200!', '30000!', '60000!'] as const;

/** Whether a text looks like a calculation request (a factorial such as `20!`). */
export function looksLikeCalc(text: string): boolean {
  return /^\s*\d+\s*!\s*$/.test(text);
}

/** Values longer than this are shown collapsed until "show all". */
export const COLLAPSE_CHARS = 240;

/** The text shown while collapsed: the value's start and end with an ellipsis. */
export function collapse(value: string, keep: number = COLLAPSE_CHARS): string {
  if (value.length <= keep) return value;
  const half = Math.floor(keep / 2);
  return `${value.slice(0, half)}…${value.slice(-half)}`;
}

/** Whether a value needs a "show all" toggle: long, or abbreviated by the server. */
export function isCollapsible(calc: CalcResult): boolean {
  return calc.value !== null && (calc.truncated || calc.value.length > COLLAPSE_CHARS);
}

/** "19 digits", "1,234 digits". */
export function describeDigits(digits: number | null): string {
  if (digits === null) return '';
  return `${digits.toLocaleString('en-US')} digit${digits === 1 ? '' : 's'}`;
}

/** How many digits `shown` leaves out of a value with `digits` digits (0 when none). */
export function hiddenDigits(shown: string, digits: number | null): number {
  if (digits === null) return 0;
  let visible = 0;
  for (const c of shown) if (c >= '0' && c <= '9') visible += 1;
  return Math.max(0, digits - visible);
}

/** Fetches the full value of a truncated result from `GET /calc/{id}`. */
export async function fetchFullValue(
  id: string,
  fetcher: typeof fetch = fetch,
): Promise<{ ok: true; value: string } | { ok: false; error: string }> {
  try {
    const res = await fetcher(`/calc/${encodeURIComponent(id)}`);
    if (!res.ok) {
      return {
        ok: false,
        error:
          res.status === 404
            ? 'The server no longer keeps this value.'
            : `The server answered ${res.status}.`,
      };
    }
    return { ok: true, value: (await res.text()).trim() };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}
