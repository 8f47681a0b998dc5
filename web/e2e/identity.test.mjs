// @ts-check
/**
 * Browser tests of sign-in (issue 16, docs/auth.md) against the real release
 * server with `--auth optional` and an HS256 secret: tokens minted by
 * `actorchat token`, the client opened at `/#token=…`. Run with the other
 * browser tests: `npm run e2e`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BIN,
  DESKTOP,
  Server,
  axeViolations,
  cspViolations,
  eventually,
  launchBrowser,
  openClient,
  send,
  sleep,
  uniqueRoom,
  waitConnected,
  watchCsp,
} from './harness.mjs';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;
/** A directory for the secret, removed at the end. */
const dir = mkdtempSync(join(tmpdir(), 'actorchat-e2e-auth-'));
const secretFile = join(dir, 'secret');

before(async () => {
  writeFileSync(secretFile, randomBytes(48).toString('base64'));
  // No leeway: an expired token is refused the second after its `exp`, so
  // the tests wait seconds, not the default leeway on top.
  server = await Server.start(['--auth', 'optional', '--auth-hs256-secret-file', secretFile, '--auth-leeway-secs', '0']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A token signed with the server's secret, by the server's own tool.
 * @param {string} sub
 * @param {string} name
 * @param {string} ttl e.g. `10m`, `3s`
 * @param {string[]} [more] further options (`--rooms`, `--admin`)
 */
function mint(sub, name, ttl, more = []) {
  return execFileSync(BIN, ['token', '--sub', sub, '--name', name, '--ttl', ttl, '--auth-hs256-secret-file', secretFile, ...more], {
    encoding: 'utf8',
  }).trim();
}

/**
 * The token's `exp` (read, not verified: the test only needs the time).
 * @param {string} token
 */
function expOf(token) {
  const payload = token.split('.')[1] ?? '';
  return Number(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')).exp);
}

/**
 * Opens `path` (e.g. `/#token=…`) in a fresh context, recording the page's
 * WebSocket URLs and the frames it sent.
 * @param {string} path
 * @param {{ connect?: boolean }} [opts] `connect: false` when the page must not connect
 */
async function open(path, opts = {}) {
  const context = await browser.newContext({ viewport: DESKTOP });
  await context.addInitScript(() => {
    if (localStorage.getItem('actorchat.intro-seen') === null) localStorage.setItem('actorchat.intro-seen', '1');
  });
  const page = await context.newPage();
  watchCsp(page);
  /** @type {string[]} */
  const sockets = [];
  /** @type {Record<string, unknown>[]} */
  const sent = [];
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    ws.on('framesent', (f) => {
      try {
        sent.push(JSON.parse(String(f.payload)));
      } catch {
        // Not JSON: not ours.
      }
    });
  });
  await page.goto(`${server.url}${path}`);
  if (opts.connect !== false) await waitConnected(page);
  return { context, page, sockets, sent };
}

/**
 * The chat row showing `text`.
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
const row = (page, text) => page.locator('[data-testid="message"]').filter({ has: page.locator('[data-testid="text"]', { hasText: text }) });

/** @param {import('playwright-core').Page} page */
const expiresAt = async (page) => Number(await page.getByTestId('session-expiry').getAttribute('data-expires-at'));

describe('sign-in', { timeout: 180_000 }, () => {
  it('a verified user: her token leaves the address bar, she sees who she is, and her messages carry the badge; a guest beside her is marked as one', { timeout: 60_000 }, async () => {
    const token = mint('ada', 'Ada', '10m');
    const ada = await open(`/#token=${token}`);
    const guest = await openClient(browser, server.url, { name: 'Bob' });
    try {
      // Gone from the address bar, kept for this tab, presented on the socket.
      assert.equal(ada.page.url(), `${server.url}/`);
      assert.equal(await ada.page.evaluate(() => sessionStorage.getItem('actorchat.token')), token);
      assert.equal(new URL(ada.sockets[0] ?? 'ws://x/').searchParams.get('token'), token);

      // Who she is: name, user id, when the session ends.
      const who = ada.page.getByTestId('signed-in');
      assert.equal(await who.getAttribute('data-kind'), 'verified');
      assert.equal(await who.getAttribute('data-user-id'), 'ada');
      assert.match(String(await who.textContent()), /Signed in as\s+ada/);
      assert.equal(await expiresAt(ada.page), expOf(token));
      assert.match(String(await ada.page.getByTestId('session-expiry').textContent()), /until .+\(in (9|10) min\)/);
      assert.match(String(await ada.page.getByTestId('my-name').textContent()), /Ada/);
      // Her name is her token's: nothing to edit.
      assert.equal(await ada.page.getByRole('button', { name: /change name/ }).count(), 0);
      // The guest sees who it is too.
      assert.equal(await guest.page.getByTestId('signed-in').getAttribute('data-kind'), 'guest');

      await send(ada.page, 'hello from Ada');
      await send(guest.page, 'hi Ada, a guest here');
      for (const page of [ada.page, guest.page]) {
        const adas = row(page, 'hello from Ada');
        const badge = adas.getByTestId('verified');
        await badge.waitFor({ timeout: 10_000 });
        assert.equal(await badge.getAttribute('title'), 'verified user ada');
        assert.match(String(await badge.textContent()), /verified user ada/);
        assert.equal(await adas.getByTestId('guest-mark').count(), 0);
        const guests = row(page, 'hi Ada, a guest here');
        await guests.getByTestId('guest-mark').waitFor({ timeout: 10_000 });
        assert.equal(await guests.getByTestId('verified').count(), 0);
      }
      assert.match(String(await row(ada.page, 'hello from Ada').getByTestId('author').textContent()), /Ada\s+\(you\)/);
      assert.match(String(await row(guest.page, 'hi Ada, a guest here').getByTestId('author').textContent()), /Bob\s+\(you\)/);

      assert.deepEqual(await axeViolations(ada.page), []);
    } finally {
      await ada.context.close();
      await guest.context.close();
    }
  });

  it('a refused token: the server\'s sentence, and no connection attempts', { timeout: 60_000 }, async () => {
    const expiring = mint('ada', 'Ada', '1s');
    // Past its `exp` (no leeway on this server).
    const wait = (expOf(expiring) + 1) * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    const tampered = `${mint('ada', 'Ada', '10m').slice(0, -4)}AAAA`;
    /** @type {[string, string][]} */
    const cases = [
      [expiring, 'The token has expired.'],
      [tampered, 'signature is not valid'],
    ];
    for (const [token, sentence] of cases) {
      const p = await open(`/#${uniqueRoom('refused')}&token=${token}`, { connect: false });
      try {
        const halt = p.page.getByTestId('halt');
        await halt.waitFor({ timeout: 10_000 });
        assert.equal(await halt.getAttribute('data-kind'), 'refused');
        assert.ok(String(await halt.textContent()).includes(sentence), String(await halt.textContent()));
        assert.match(String(await halt.textContent()), /#token=/);
        assert.equal(await p.page.getByTestId('connection').getAttribute('data-state'), 'stopped');
        assert.doesNotMatch(p.page.url(), /token/);
        // Bounded: no socket in a second and a half (a redial loop would have dialled).
        await sleep(1500);
        assert.deepEqual(p.sockets, []);
      } finally {
        await p.context.close();
      }
    }
  });

  it('a short-lived token: at its expiry the session ends with a plain notice, and the page does not redial', { timeout: 60_000 }, async () => {
    const token = mint('ada', 'Ada', '3s');
    const p = await open(`/#${uniqueRoom('expiry')}&token=${token}`);
    try {
      const halt = p.page.getByTestId('halt');
      await halt.waitFor({ timeout: 15_000 });
      assert.equal(await halt.getAttribute('data-kind'), 'expired');
      assert.match(String(await halt.textContent()), /Your session expired at .+, so you are no longer connected\./);
      assert.equal(await p.page.getByTestId('connection').getAttribute('data-state'), 'stopped');
      assert.match(String(await p.page.getByTestId('offline-hint').textContent()), /your session expired/);
      await sleep(2000);
      assert.equal(p.sockets.length, 1);
    } finally {
      await p.context.close();
    }
  });

  it('a new token in the fragment extends the session in-band: refresh, a later expiry shown, no close at the old one', { timeout: 60_000 }, async () => {
    const room = uniqueRoom('refresh');
    // Long enough to load the page on a busy machine before the refresh is sent.
    const first = mint('ada', 'Ada', '8s');
    const p = await open(`/#${room}&token=${first}`);
    try {
      assert.equal(await expiresAt(p.page), expOf(first));
      // The embedding application navigates to the new token.
      const second = mint('ada', 'Ada', '10m');
      await p.page.evaluate((t) => {
        location.hash = `token=${t}`;
      }, second);
      await eventually(async () => p.sent.some((f) => f.type === 'refresh' && f.token === second));
      await eventually(async () => (await expiresAt(p.page)) === expOf(second));
      await p.page.locator('[data-testid="notice"][data-code="refreshed"]').waitFor({ timeout: 5_000 });
      // The token left the address bar; the room stays named there.
      assert.equal(p.page.url(), `${server.url}/#${room}`);
      assert.equal(await p.page.evaluate(() => sessionStorage.getItem('actorchat.token')), second);

      // Past the first token's expiry: still connected, on the same socket.
      const wait = (expOf(first) + 2) * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
      assert.equal(await p.page.getByTestId('halt').count(), 0);
      assert.equal(await p.page.getByTestId('connection').getAttribute('data-state'), 'open');
      await send(p.page, 'still here');
      await row(p.page, 'still here').getByTestId('verified').waitFor({ timeout: 10_000 });
      assert.equal(p.sockets.length, 1);
    } finally {
      await p.context.close();
    }
  });

  it('a room the token does not grant: a clear notice, and the user stays where they are', { timeout: 60_000 }, async () => {
    const room = uniqueRoom('team');
    const token = mint('ada', 'Ada', '10m', ['--rooms', `${room},team-*`]);
    const p = await open(`/#${room}&token=${token}`);
    try {
      await p.page.evaluate(() => {
        location.hash = 'secret';
      });
      const notice = p.page.locator('[data-testid="notice"][data-code="forbidden"]');
      await notice.waitFor({ timeout: 10_000 });
      assert.match(String(await notice.textContent()), new RegExp(`You cannot enter #secret: .*You are still in #${room}\\.`));
      await eventually(async () => p.page.url() === `${server.url}/#${room}`);
      assert.equal(await p.page.getByTestId('connection').getAttribute('data-state'), 'open');
    } finally {
      await p.context.close();
    }
  });

  it('without --auth the page looks as it always did: no badges, no guest marks, no sign-in line', { timeout: 60_000 }, async () => {
    const plain = await Server.start();
    const p = await openClient(browser, plain.url, { name: 'Ada', room: uniqueRoom('off') });
    try {
      await send(p.page, 'plain');
      await row(p.page, 'plain').locator('[data-testid="rtt"]').waitFor({ timeout: 10_000 });
      const identity = await p.page.evaluate(async () => (await fetch('/api/identity')).json());
      assert.deepEqual(identity, { auth: 'off', user: null });
      for (const id of ['signed-in', 'verified', 'guest-mark', 'halt']) {
        assert.equal(await p.page.getByTestId(id).count(), 0, id);
      }
    } finally {
      await p.context.close();
      await plain.stop();
    }
  });

  it('pages reported no Content-Security-Policy violations', () => {
    assert.deepEqual(cspViolations, []);
  });
});
