// @ts-check
/**
 * Browser tests of the observer page (/observer) against the real release
 * server. Run with the other browser tests: `npm run e2e`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  Server,
  axeViolations,
  cspViolations,
  eventually,
  launchBrowser,
  openClient,
  send,
  uniqueRoom,
  watchCsp,
} from './harness.mjs';

const TOKEN = 'e2e-observer-token';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await Server.start(['--admin-token', TOKEN]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.down();
});

/**
 * Opens /observer in a fresh context (so a fresh session storage).
 * @param {string} base
 */
async function openObserver(base) {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  watchCsp(page);
  await page.goto(`${base}/observer`);
  return { context, page };
}

/** @param {import('playwright-core').Locator} locator */
const number = async (locator) => Number(String(await locator.textContent()).replace(/,/g, ''));

describe('observer', { timeout: 240_000 }, () => {
  it('with a token: connections rise as a page joins, a killed room restarts and the chat keeps working', { timeout: 120_000 }, async () => {
    const room = uniqueRoom('obs');
    const a = await openClient(browser, server.url, { name: 'Alice', room });
    const obs = await openObserver(server.url);
    try {
      // The server has a token: the page asks for it once.
      await obs.page.getByLabel('Admin token').fill(TOKEN);
      await obs.page.getByRole('button', { name: 'Open the observer' }).click();
      await obs.page.locator('[data-testid="observer-state"][data-state="open"]').waitFor();
      assert.match(String(await obs.page.getByTestId('access').textContent()), /Admin: actions are on/);
      const open = obs.page.getByTestId('obs-connections-open');
      await eventually(async () => (await number(open)) === 1);

      const b = await openClient(browser, server.url, { name: 'Bob', room });
      await eventually(async () => (await number(open)) === 2);
      const row = obs.page.locator(`[data-testid="room-row"][data-room="${room}"]`);
      await eventually(async () => (await number(row.getByTestId('room-members'))) === 2);
      assert.equal(await number(row.getByTestId('room-restarts')), 0);
      assert.deepEqual(await axeViolations(obs.page), []);

      await row.getByRole('button', { name: `Kill room ${room}` }).click();
      await eventually(async () => (await number(row.getByTestId('room-restarts'))) === 1);
      // The room came back, with both members rejoined.
      await eventually(async () => (await number(row.getByTestId('room-members'))) === 2);
      await obs.page.locator(`[data-testid="tree-room"][data-room="${room}"]`).waitFor();

      await send(a.page, 'after the restart');
      await b.page
        .locator('[data-testid="message"]')
        .filter({ has: b.page.locator('[data-testid="text"]'), hasText: 'after the restart' })
        .waitFor();
      // The token stays in the tab's session storage, never in the URL.
      assert.equal(new URL(obs.page.url()).search, '');
      await b.context.close();
    } finally {
      await obs.context.close();
      await a.context.close();
    }
  });

  it('without a token: the page is read-only and says so', { timeout: 60_000 }, async () => {
    const plain = await Server.start();
    try {
      const room = uniqueRoom('ro');
      const a = await openClient(browser, plain.url, { name: 'Carol', room });
      const obs = await openObserver(plain.url);
      try {
        await obs.page.locator('[data-testid="observer-state"][data-state="open"]').waitFor();
        assert.match(String(await obs.page.getByTestId('access').textContent()), /Read-only.*loopback clients only/s);
        const row = obs.page.locator(`[data-testid="room-row"][data-room="${room}"]`);
        await row.waitFor();
        assert.equal(await row.getByRole('button', { name: `Kill room ${room}` }).isDisabled(), true);
      } finally {
        await obs.context.close();
        await a.context.close();
      }
    } finally {
      await plain.down();
    }
  });

  it('no Content-Security-Policy violations on the observer', () => {
    assert.deepEqual(cspViolations, []);
  });
});
