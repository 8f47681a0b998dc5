// @ts-check
/**
 * Shared set-up for the browser tests: starts the real release server on a
 * free port (and restarts it on the same port), and launches Debian's
 * Chromium through playwright-core (no browser download).
 *
 * Environment:
 *   ACTORCHAT_BIN   server binary (default: ../target/release/actorchat)
 *   CHROMIUM_PATH   browser (default: /usr/bin/chromium)
 *   E2E_HEADED=1    show the browser window
 *   E2E_SCREENSHOT  where the README screenshot goes (default: docs/screenshot.png)
 *
 * The tests mean this checkout's client, web/dist, which the release binary
 * embeds when it compiles: a binary built before the last `npm run build`
 * (or from another checkout) is refused with a sentence saying so.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = process.env.ACTORCHAT_BIN ?? `${ROOT}target/release/actorchat`;
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
];

/** A free TCP port on 127.0.0.1 (the OS picks; we release it at once). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @type {boolean | null} */
let storesHistory = null;

/**
 * Whether the binary keeps history on disk (it has `--data-dir`, issue 11).
 * Asked once; older binaries run without the flag.
 */
export function hasDataDir() {
  if (storesHistory === null) {
    try {
      storesHistory = execFileSync(BIN, ['--help'], { encoding: 'utf8' }).includes('--data-dir');
    } catch {
      storesHistory = false;
    }
  }
  return storesHistory;
}

/**
 * The release server as a child process, restartable on the same port and
 * on the same data directory: a fresh temporary one per server, so tests
 * never share stored history with another run (or the developer's
 * `./actorchat-data`), and a restart keeps it, as a real one would.
 */
export class Server {
  /**
   * @param {number} port
   * @param {string[]} [args] extra command-line options for the server
   */
  constructor(port, args = []) {
    this.port = port;
    this.args = args;
    this.url = `http://127.0.0.1:${port}`;
    /** @type {import('node:child_process').ChildProcess | null} */
    this.child = null;
    /** Recent server output, printed when a test fails. */
    this.log = '';
    /** The server's `--data-dir`, removed by `stop`; null for a binary without one. */
    this.dataDir = hasDataDir() ? mkdtempSync(join(tmpdir(), 'actorchat-e2e-')) : null;
  }

  /** @param {string[]} [args] extra command-line options for the server */
  static async start(args = []) {
    if (!existsSync(BIN)) {
      throw new Error(
        `No server binary at ${BIN}. Build it with \`cargo build --release\` or set ACTORCHAT_BIN.`,
      );
    }
    const server = new Server(await freePort(), args);
    await server.up();
    const embedded = await (await fetch(`${server.url}/index.html`)).text();
    if (embedded !== readFileSync(join(DIST, 'index.html'), 'utf8')) {
      await server.stop();
      throw new Error(
        `${BIN} embeds another web build than web/dist: rebuild it (\`cargo build --release\`) after \`npm run build\`.`,
      );
    }
    return server;
  }

  /** Spawns the binary and waits until /healthz answers 200. */
  async up() {
    const direct = `http://127.0.0.1:${this.port}`;
    const args = ['--bind', `127.0.0.1:${this.port}`, ...this.args];
    if (this.dataDir !== null) args.push('--data-dir', this.dataDir);
    const child = spawn(BIN, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    });
    this.child = child;
    const keep = (/** @type {Buffer} */ b) => {
      this.log = (this.log + b.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`server exited with ${child.exitCode}:\n${this.log}`);
      }
      try {
        const res = await fetch(`${direct}/healthz`);
        if (res.status === 200) return;
      } catch {
        // Not listening yet.
      }
      await sleep(50);
    }
    throw new Error(`server did not answer /healthz within 20 s:\n${this.log}`);
  }

  /**
   * SIGTERM, then wait for the exit (the server promises 5 s; SIGKILL after 8).
   * `signal: 'SIGKILL'` is a crash instead: nothing gets to shut down cleanly.
   * @param {NodeJS.Signals} [signal]
   */
  async down(signal = 'SIGTERM') {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
    await exited;
    clearTimeout(timer);
  }

  async restart() {
    await this.down();
    await this.up();
  }

  /** Empties the data directory (the server must be down): its stored history is lost. */
  wipe() {
    if (this.dataDir === null) return;
    rmSync(this.dataDir, { recursive: true, force: true });
    mkdirSync(this.dataDir);
  }

  /** Ends the server and removes its data directory. */
  async stop() {
    await this.down();
    if (this.dataDir !== null) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: process.env.E2E_HEADED !== '1',
    args: CHROMIUM_ARGS,
  });
}

/** A room name no other test uses. */
export function uniqueRoom(tag = 'e2e') {
  return `${tag}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/**
 * Every Content-Security-Policy violation any page reported on its console,
 * across the whole run (the last test asserts there are none).
 * @type {string[]}
 */
export const cspViolations = [];

/**
 * Watches a page's console for CSP violations.
 * @param {import('playwright-core').Page} page
 */
export function watchCsp(page) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to (load|execute|apply|connect|frame)/i.test(text)) {
      cspViolations.push(`${page.url()}: ${text}`);
    }
  });
}

/** The viewports the issue names. */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/**
 * Opens the client in a fresh context with a remembered name. The returned
 * `sent` collects every frame the page's WebSockets sent (parsed JSON).
 * @param {import('playwright-core').Browser} browser
 * @param {string} base
 * @param {{ name?: string, room?: string, viewport?: { width: number, height: number }, intro?: boolean }} opts
 */
export async function openClient(browser, base, opts = {}) {
  const context = await browser.newContext({ viewport: opts.viewport ?? DESKTOP });
  if (opts.name !== undefined) {
    const name = opts.name;
    await context.addInitScript((n) => {
      if (localStorage.getItem('actorchat.name') === null) localStorage.setItem('actorchat.name', n);
    }, name);
  }
  if (opts.intro !== true) {
    // The first-visit explanation is tested on its own; elsewhere it is seen.
    await context.addInitScript(() => {
      if (localStorage.getItem('actorchat.intro-seen') === null) localStorage.setItem('actorchat.intro-seen', '1');
    });
  }
  const page = await context.newPage();
  watchCsp(page);
  /** @type {Record<string, unknown>[]} */
  const sent = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      try {
        sent.push(JSON.parse(String(f.payload)));
      } catch {
        // Not JSON: not ours to count.
      }
    });
  });
  await page.goto(`${base}/${opts.room !== undefined ? `#${opts.room}` : ''}`);
  await waitConnected(page);
  return { context, page, sent };
}

const AXE_SOURCE = readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

/**
 * Runs axe-core in the page and returns its serious and critical violations
 * as readable lines (empty when there are none). The script is evaluated
 * through the DevTools protocol, which the page's CSP does not govern, so the
 * policy under test stays as strict as in production.
 * @param {import('playwright-core').Page} page
 */
export async function axeViolations(page) {
  await page.evaluate(AXE_SOURCE);
  /** @typedef {{ id: string, impact: string | null, help: string, nodes: { target: unknown[] }[] }} Violation */
  /** @type {Violation[]} */
  const violations = await page.evaluate(async () => {
    /** @type {{ run: (ctx: Document, opts: object) => Promise<{ violations: Violation[] }> }} */
    // @ts-expect-error axe is the global the script above defines.
    const axe = window.axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target })),
    }));
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** @param {import('playwright-core').Page} page */
export async function waitConnected(page, timeout = 10_000) {
  await page.locator('[data-testid="connection"][data-state="open"]').waitFor({ timeout });
  // The welcome has arrived once the session name is shown.
  await page.waitForFunction(
    () => !document.querySelector('[data-testid="my-name"]')?.textContent?.includes('…'),
    undefined,
    { timeout },
  );
}

/**
 * Types a message and presses Enter.
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
export async function send(page, text) {
  const input = page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
}

/**
 * Polls until `fn` returns a truthy value (or throws with the last value).
 * @template T
 * @param {() => Promise<T>} fn
 * @param {number} [timeout]
 * @returns {Promise<T>}
 */
export async function eventually(fn, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms (last: ${String(last)})`);
    await sleep(50);
  }
}
