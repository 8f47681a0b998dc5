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
 * The tests mean this checkout's client, web/dist. A release binary serves
 * the web/dist it was compiled with; when that is another build (a binary
 * from another checkout, or one built before the last `npm run build`),
 * pages are served through a small proxy in front of the server (see
 * `DistProxy`), and a line on stderr says so.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, createServer as createHttpServer } from 'node:http';
import { connect, createServer } from 'node:net';
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
    /** Where pages go: the server, or the proxy serving this checkout's web/dist in front of it. */
    this.url = `http://127.0.0.1:${port}`;
    /** @type {DistProxy | null} */
    this.proxy = null;
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
      server.proxy = await DistProxy.start(server.port, embedded);
      server.url = server.proxy.url;
      if (!proxyNoted) {
        proxyNoted = true;
        process.stderr.write(
          `note: ${BIN} embeds another web build than web/dist; serving web/dist through a proxy in front of it\n`,
        );
      }
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

  /** Ends the server (and the proxy) and removes its data directory. */
  async stop() {
    await this.down();
    await this.proxy?.close();
    if (this.dataDir !== null) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
let proxyNoted = false;

const TYPES = /** @type {Record<string, string>} */ ({
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
});

/** Headers of one answer, not of the server's pages in general. */
const PER_RESPONSE = ['content-type', 'cache-control', 'date', 'connection', 'keep-alive', 'transfer-encoding'];

/**
 * Serves this checkout's web/dist in front of a server that embeds another
 * build: `/assets/*` from disk; the server's own page (its embedded
 * index.html, wherever it answers it: `/`, `/observer`, deep links) swapped
 * for web/dist/index.html under the server's headers (CSP included);
 * everything else, WebSocket upgrades included, passed through byte for
 * byte. `Host` is passed on unchanged, so the server's origin check and CSP
 * see the proxy's origin as its own. It keeps running across the server's
 * restarts (same port), like a load balancer would.
 */
class DistProxy {
  /**
   * @param {number} upstream the server's port
   * @param {string} embedded the server's index.html
   */
  static async start(upstream, embedded) {
    const port = await freePort();
    const proxy = new DistProxy(upstream, port, embedded);
    await new Promise((resolve) => proxy.http.listen(port, '127.0.0.1', () => resolve(undefined)));
    return proxy;
  }

  /**
   * @param {number} upstream
   * @param {number} port
   * @param {string} embedded
   */
  constructor(upstream, port, embedded) {
    this.upstream = upstream;
    this.url = `http://127.0.0.1:${port}`;
    this.embedded = embedded;
    /** The server's security headers for its pages, taken from its answers. @type {Record<string, string | string[]>} */
    this.pageHeaders = {};
    /** @type {Set<import('node:net').Socket>} */
    this.sockets = new Set();
    this.http = createHttpServer((req, res) => this.handle(req, res));
    this.http.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.http.on('upgrade', (req, socket, head) => this.tunnel(req, socket, head));
    // Never what keeps a test process alive.
    this.http.unref();
  }

  /**
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:http').ServerResponse} res
   */
  handle(req, res) {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path.startsWith('/assets/')) {
      const file = join(DIST, path);
      const ext = path.slice(path.lastIndexOf('.'));
      if (!file.startsWith(DIST) || !existsSync(file)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found');
        return;
      }
      res.writeHead(200, {
        ...this.pageHeaders,
        'content-type': TYPES[ext] ?? 'application/octet-stream',
        'cache-control': 'public, max-age=31536000, immutable',
      });
      res.end(readFileSync(file));
      return;
    }
    const up = httpRequest(
      // A fresh connection each time: pooled ones die with every server restart.
      { host: '127.0.0.1', port: this.upstream, method: req.method, path: req.url, headers: req.headers, agent: false },
      (answer) => {
        const html = String(answer.headers['content-type'] ?? '').startsWith('text/html');
        if (!html) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        /** @type {Buffer[]} */
        const chunks = [];
        answer.on('data', (c) => chunks.push(c));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          const headers = { ...answer.headers };
          if (body.toString('utf8') === this.embedded) {
            const local = readFileSync(join(DIST, 'index.html'));
            const { 'content-length': _l, etag: _e, 'last-modified': _m, ...rest } = headers;
            /** @type {Record<string, string | string[]>} */
            const page = {};
            for (const [k, v] of Object.entries(rest)) {
              if (v !== undefined && !PER_RESPONSE.includes(k)) page[k] = v;
            }
            this.pageHeaders = page;
            res.writeHead(answer.statusCode ?? 200, { ...rest, 'content-length': String(local.length) });
            res.end(local);
            return;
          }
          res.writeHead(answer.statusCode ?? 502, headers);
          res.end(body);
        });
      },
    );
    up.on('error', () => {
      // The server is down (a test restarts it): what a browser would see without the proxy.
      req.socket.destroy();
    });
    req.pipe(up);
  }

  /**
   * A WebSocket upgrade: the request head is replayed to the server and
   * both directions are piped raw from then on.
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:stream').Duplex} socket
   * @param {Buffer} head
   */
  tunnel(req, socket, head) {
    const up = connect(this.upstream, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    up.on('close', () => socket.end());
    socket.on('close', () => up.destroy());
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.http.close(() => resolve(undefined)));
  }
}

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
