/**
 * Connection news written for people: what happened and what the app does
 * about it, never a bare WebSocket close code.
 */

/** Why the connection ended, from its close code. */
export function describeClose(code: number): string {
  switch (code) {
    case 1000:
      return 'The connection was closed.';
    case 1001:
    case 1012:
      return 'The server restarted or went away.';
    case 1008:
      return 'The server closed the connection after messages it could not accept.';
    case 1009:
      return 'The server closed the connection: a message was too large.';
    case 1011:
      return 'The server ran into a problem.';
    case 1013:
      return 'The server is too busy right now.';
    default:
      return 'The connection to the server was lost.';
  }
}

/** The system line shown when the connection drops. */
export function disconnectedLine(code: number): string {
  return `${describeClose(code)} Reconnecting… Messages you send meanwhile are queued.`;
}

/**
 * Said when a reconnect could not resume (`recovered: false`): the list is
 * replaced by the recent history, and messages from the gap may be missing.
 */
export function notRecoveredLine(epochChanged: boolean): string {
  const why = epochChanged
    ? 'the server lost its stored history'
    : 'too many were sent while you were away';
  return `Could not recover the messages sent while you were away (${why}); showing the recent history instead, so some may be missing.`;
}

/** The sentence shown for a server error, by its code (the server's own sentence otherwise). */
export function describeError(code: string, serverMessage: string, ratePerSec: number): string {
  switch (code) {
    case 'rate_limited':
      return `You are sending faster than the server accepts (${ratePerSec} messages a second); the extra messages were not delivered.`;
    case 'calc_busy':
      return 'Your calculation is still running; wait for it before sending more.';
    case 'unavailable':
      return 'The server could not store your message, so it was not sent. Try again in a moment (Retry).';
    default:
      return serverMessage;
  }
}
