// @ts-check
/**
 * Browser tests of the web client against the real release server.
 * Run: `npm run e2e` (needs target/release/actorchat and /usr/bin/chromium).
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ROOT,
  Server,
  eventually,
  launchBrowser,
  openClient,
  send,
  sleep,
  uniqueRoom,
  waitConnected,
} from './harness.mjs';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.down();
});

/**
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
const row = (page, text) =>
  page.locator('[data-testid="message"]').filter({
    has: page.locator('[data-testid="text"], [data-testid="calc"]'),
    hasText: text,
  });

/** @param {import('playwright-core').Page} page */
const count = async (page, /** @type {string} */ id) =>
  Number(await page.getByTestId(id).textContent());

describe('web client', { timeout: 120_000 }, () => {
  it('two people chat: authors, "Me" with an RTT, participant count 2 → 1', async () => {
    const room = uniqueRoom();
    const a = await openClient(browser, server.url, { name: 'Alice', room });
    const b = await openClient(browser, server.url, { name: 'Bob', room });
    try {
      for (const { page } of [a, b]) {
        await eventually(async () => (await count(page, 'participant-count')) === 2);
      }

      // Send is disabled on empty input.
      await a.page.getByLabel('Message', { exact: true }).fill('');
      assert.equal(await a.page.getByRole('button', { name: 'Send' }).isDisabled(), true);

      await send(a.page, 'hello from Alice');
      await send(b.page, 'hi Alice, Bob here');

      const own = row(a.page, 'hello from Alice');
      await own.locator('[data-testid="rtt"]').waitFor();
      assert.equal(await own.getByTestId('author').textContent(), 'Me');
      assert.match(String(await own.getByTestId('rtt').textContent()), /^\d+(\.\d)? ms$/);
      const seenByB = row(b.page, 'hello from Alice');
      await seenByB.waitFor();
      assert.equal((await seenByB.getByTestId('author').textContent())?.trim(), 'Alice');

      const bobOwn = row(b.page, 'hi Alice, Bob here');
      await bobOwn.locator('[data-testid="rtt"]').waitFor();
      assert.equal(await bobOwn.getByTestId('author').textContent(), 'Me');
      const seenByA = row(a.page, 'hi Alice, Bob here');
      await seenByA.waitFor();
      assert.equal((await seenByA.getByTestId('author').textContent())?.trim(), 'Bob');

      assert.equal(await count(a.page, 'sent-count'), 1);
      assert.equal(await count(a.page, 'received-count'), 2);
      assert.notEqual(await a.page.getByTestId('rtt-average').textContent(), '–');

      await b.context.close();
      await eventually(async () => (await count(a.page, 'participant-count')) === 1);
    } finally {
      await a.context.close();
      await b.context.close().catch(() => {});
    }
  });

  it('renames (remembered) and switches rooms from the URL hash', async () => {
    const room = uniqueRoom();
    const a = await openClient(browser, server.url, { name: 'Carol', room });
    const b = await openClient(browser, server.url, { name: 'Dave', room });
    try {
      await a.page.getByTestId('my-name').click();
      const field = a.page.getByLabel('Your name');
      await field.fill('Caroline');
      await field.press('Enter');
      await eventually(async () =>
        (await b.page.getByTestId('participants').textContent())?.includes('Caroline'),
      );
      await send(a.page, 'after rename');
      const seen = row(b.page, 'after rename');
      await seen.waitFor();
      assert.equal((await seen.getByTestId('author').textContent())?.trim(), 'Caroline');
      assert.equal(
        await a.page.evaluate(() => localStorage.getItem('actorchat.name')),
        'Caroline',
      );

      const other = uniqueRoom('other');
      await a.page.evaluate((r) => {
        location.hash = r;
      }, other);
      await eventually(async () => (await a.page.getByTestId('room').textContent()) === `#${other}`);
      await eventually(async () => (await count(a.page, 'participant-count')) === 1);
      await eventually(async () => (await count(b.page, 'participant-count')) === 1);

      // The switcher does the same and updates the hash.
      await a.page.getByLabel('Switch to room').fill(room);
      await a.page.getByRole('button', { name: 'Join' }).click();
      await eventually(async () => (await count(b.page, 'participant-count')) === 2);
      assert.equal(new URL(a.page.url()).hash, `#${room}`);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  it('a calculation 20! shows 2432902008176640000', async () => {
    const { context, page } = await openClient(browser, server.url, { room: uniqueRoom() });
    try {
      // A hint link puts a calculation into the input.
      await page.getByRole('button', { name: '200!' }).click();
      assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), '200!');
      await send(page, '20!');
      const value = page.getByTestId('calc-value').first();
      await value.waitFor({ timeout: 15_000 });
      assert.equal(await value.textContent(), '2432902008176640000');
      const calc = page.getByTestId('calc').first();
      assert.equal(await calc.getAttribute('data-status'), 'ok');
      assert.match(String(await calc.textContent()), /19 digits/);

      // A value over 10,000 digits arrives abbreviated; "Show all" fetches /calc/{id}.
      await send(page, '30000!');
      const big = page.locator('[data-testid="calc"]').filter({ hasText: '121,288 digits' });
      await big.waitFor({ timeout: 30_000 });
      const bigValue = big.getByTestId('calc-value');
      assert.ok(String(await bigValue.textContent()).length < 1000);
      await big.getByRole('button', { name: 'Show all' }).click();
      await big.getByRole('button', { name: 'Show less' }).waitFor();
      const full = String(await bigValue.textContent());
      assert.equal(full.length, 121_288);
      assert.match(full, /^2759537246/);
    } finally {
      await context.close();
    }
  });

  it('reconnects after a server restart and can send again', async () => {
    const { context, page } = await openClient(browser, server.url, { room: uniqueRoom() });
    try {
      await send(page, 'before restart');
      await row(page, 'before restart').locator('[data-testid="rtt"]').waitFor();

      await server.down();
      await page.locator('[data-testid="connection"]:not([data-state="open"])').waitFor();
      await server.up();
      await waitConnected(page, 20_000);
      await page.getByText(/Reconnected to #/).waitFor();

      await send(page, 'after restart');
      await row(page, 'after restart').locator('[data-testid="rtt"]').waitFor();
    } finally {
      await context.close();
    }
  });

  it('auto-send at 50 ms for 2 s sends and receives at least 20 messages', async () => {
    const { context, page } = await openClient(browser, server.url, { room: uniqueRoom() });
    try {
      await page.getByLabel(/Interval/).fill('50');
      assert.equal(await page.getByTestId('auto-interval').textContent(), '50 ms');
      await page.getByRole('button', { name: 'Start' }).click();
      await sleep(2000);
      await page.getByRole('button', { name: 'Stop' }).click();
      const sent = await count(page, 'sent-count');
      assert.ok(sent >= 20, `sent ${sent}`);
      // Every message comes back: wait until nothing is pending.
      await eventually(async () => (await count(page, 'received-count')) >= sent, 10_000);
      const confirmed = await page.locator('[data-testid="message"][data-delivery="confirmed"]').count();
      assert.ok(confirmed >= 20, `confirmed ${confirmed}`);
      assert.equal(await page.locator('[data-testid="notice"][data-code="rate_limited"]').count(), 0);
      // The chart has points and shows the exact value under the pointer.
      assert.ok((await page.locator('[data-testid="rtt-chart"] circle').count()) >= 20);
      await page.getByTestId('rtt-chart').hover();
      assert.match(String(await page.getByTestId('rtt-readout').textContent()), /^\s*\d+(\.\d)? ms\s*$/);

      // Sticky scrolling: scrolled up, new messages do not move the view.
      const list = page.getByTestId('messages');
      const atBottom = () =>
        list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2);
      assert.equal(await atBottom(), true);
      await list.evaluate((el) => el.scrollTo(0, 0));
      await send(page, 'while scrolled up');
      await page.getByRole('button', { name: '↓ New messages' }).waitFor();
      assert.equal(await list.evaluate((el) => el.scrollTop), 0);
      await page.getByRole('button', { name: '↓ New messages' }).click();
      assert.equal(await atBottom(), true);
      await send(page, 'following again');
      await row(page, 'following again').locator('[data-testid="rtt"]').waitFor();
      assert.equal(await atBottom(), true);
    } finally {
      await context.close();
    }
  });

  it('shows server errors as dismissible notices and marks unanswered messages failed', async () => {
    const { context, page } = await openClient(browser, server.url, { room: uniqueRoom() });
    try {
      // Far past the burst of 40: the server answers rate_limited and drops the excess.
      // Typed and submitted inside the page, so all 60 leave within a few ms.
      await page.evaluate(() => {
        const input = /** @type {HTMLInputElement} */ (document.getElementById('message-input'));
        for (let i = 0; i < 60; i++) {
          input.value = `flood ${i}`;
          input.dispatchEvent(new Event('input', { bubbles: true }));
          input.form?.requestSubmit();
        }
      });
      assert.equal(await count(page, 'sent-count'), 60);
      const notice = page.locator('[data-testid="notice"][data-code="rate_limited"]');
      await notice.waitFor();
      assert.equal(await notice.count(), 1, 'repeats fold into one notice');
      // Dropped messages get no echo and are marked failed after 10 s.
      await page.locator('[data-testid="message"][data-delivery="failed"]').first().waitFor({ timeout: 15_000 });
      await notice.getByRole('button', { name: 'Dismiss notice' }).click();
      assert.equal(await notice.count(), 0);
      // The connection is still usable.
      await sleep(2100);
      await send(page, 'still here');
      await row(page, 'still here').locator('[data-testid="rtt"]').waitFor();
    } finally {
      await context.close();
    }
  });

  it('serves the client on any path and works at 360 px', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 740 } });
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}/some/deep/link#${uniqueRoom()}`);
      await waitConnected(page);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 360, `page is ${width}px wide`);
      await page.getByRole('button', { name: 'Stats & tools' }).click();
      await page.getByTestId('participant-count').waitFor();
      await page.getByRole('button', { name: 'Hide panel' }).click();
      await send(page, 'small screen');
      await row(page, 'small screen').locator('[data-testid="rtt"]').waitFor();
    } finally {
      await context.close();
    }
  });

  it('/test.html connects, sends and shows the echo', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}/test.html`);
      // The page logs every received frame; the first one is the welcome.
      await page.waitForFunction(() => document.body.innerText.includes('welcome'), undefined, {
        timeout: 10_000,
      });
      const text = `test page ${Date.now()}`;
      const input = page.locator('input[type="text"], input:not([type]), textarea').first();
      await input.fill(text);
      await input.press('Enter');
      // The page logs what it sends too; only the echo carries the server-stamped author.
      await page.waitForFunction(
        (t) => document.body.innerText.split('\n').some((l) => l.includes(t) && l.includes('"author"')),
        text,
        { timeout: 10_000 },
      );
    } finally {
      await context.close();
    }
  });

  it('takes the README screenshot', async () => {
    const room = 'demo';
    const a = await openClient(browser, server.url, { name: 'Ada', room });
    const b = await openClient(browser, server.url, { name: 'Grace', room });
    try {
      await send(b.page, 'Hi Ada! The room actor broadcasts one serialized frame to everyone.');
      await row(a.page, 'Hi Ada!').waitFor();
      await send(a.page, 'Nice. Let me load it a bit 👋');
      for (let i = 0; i < 14; i++) {
        await send(a.page, `Hello 👋 #${i + 1}`);
        await sleep(60);
      }
      await send(b.page, 'And a factorial, computed by a calculator actor:');
      await send(a.page, '200!');
      await a.page.getByTestId('calc-value').first().waitFor({ timeout: 15_000 });
      await send(b.page, 'Looks good 🚀');
      await row(a.page, 'Looks good').waitFor();
      await eventually(async () =>
        (await a.page.locator('[data-testid="message"][data-delivery="pending"]').count()) === 0,
      );
      await a.page.getByLabel('Message', { exact: true }).fill('Hello 👋');
      await a.page.getByTestId('rtt-chart').hover();
      await sleep(300);
      const path = process.env.E2E_SCREENSHOT ?? `${ROOT}docs/screenshot.png`;
      mkdirSync(dirname(path), { recursive: true });
      await a.page.screenshot({ path });
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
});
