// Headless-Chromium interop test of volley's permessage-deflate.
//
// Starts `$VOLLEY_BIN echo --port 0`, puts a byte-counting TCP proxy in
// front of it (to see that messages really are compressed on the wire),
// serves a tiny page from 127.0.0.1, and drives a real `WebSocket` in
// Debian's Chromium through playwright-core. One line per check, then
// `N passed, M failed`; exit status 1 on any failure.
//
// Env:
//   VOLLEY_BIN       volley binary (default: <repo>/target/release/volley)
//   CHROMIUM_BIN     Chromium binary (default: /usr/bin/chromium)
//   BROWSER_TIMEOUT  overall time limit in seconds (default: 120)
//   BROWSER_KEEP_PROFILE=1  keep the temporary Chromium profile

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_BIN, Tally, installGuards, log, withTimeout } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const VOLLEY_BIN = path.resolve(REPO, process.env.VOLLEY_BIN || 'target/release/volley');
const OVERALL_TIMEOUT_MS = Number(process.env.BROWSER_TIMEOUT || 120) * 1000;
const STEP_TIMEOUT_MS = 20_000;

const started = Date.now();
const tally = new Tally();
const results = []; // { ok, name, detail }

let volley = null;
let volleyLog = '';
let context = null;
let page = null;
let httpServer = null;
let proxyServer = null;
const proxySockets = new Set();
let profileDir = null;
let cleaningUp = null;

function check(name, ok, detail = '') {
  ok = tally.check(name, ok, detail);
  results.push({ ok, name, detail });
  return ok;
}

// ---------------------------------------------------------------- cleanup

async function cleanup() {
  if (cleaningUp) return cleaningUp;
  cleaningUp = (async () => {
    if (context) {
      const ctx = context;
      context = null;
      // Playwright also kills the browser it launched when node exits.
      await withTimeout(ctx.close(), 10_000, 'closing Chromium').catch((e) =>
        log(`warning: ${e.message}`),
      );
    }
    for (const s of proxySockets) s.destroy();
    if (proxyServer) proxyServer.close();
    if (httpServer) {
      httpServer.closeAllConnections?.();
      httpServer.close();
    }
    if (volley && volley.exitCode === null && volley.signalCode === null) {
      const v = volley;
      const exited = new Promise((resolve) => v.once('exit', resolve));
      v.kill('SIGTERM');
      await withTimeout(exited, 5_000, 'volley exit').catch(() => {
        log('warning: volley ignored SIGTERM, sending SIGKILL');
        v.kill('SIGKILL');
      });
    }
    if (profileDir && process.env.BROWSER_KEEP_PROFILE !== '1') {
      fs.rmSync(profileDir, { recursive: true, force: true });
    }
  })();
  return cleaningUp;
}

function killVolleySync() {
  if (volley && volley.exitCode === null && volley.signalCode === null) {
    try {
      volley.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

const liftTimeLimit = installGuards({
  timeoutMs: OVERALL_TIMEOUT_MS,
  tally,
  cleanup,
  onExit: killVolleySync,
});

// ---------------------------------------------------------------- volley

function startVolley() {
  if (!fs.existsSync(VOLLEY_BIN)) {
    throw new Error(
      `volley binary not found at ${VOLLEY_BIN}: build it with ` +
        '`cargo build --release -p volley-cli` or set VOLLEY_BIN',
    );
  }
  return new Promise((resolve, reject) => {
    volley = spawn(VOLLEY_BIN, ['echo', '--port', '0'], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let buf = '';
    let done = false;
    const finish = (err, port) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(port);
    };
    const timer = setTimeout(
      () => finish(new Error(`volley printed no listening line within 10 s; output:\n${volleyLog}`)),
      10_000,
    );
    volley.stdout.setEncoding('utf8');
    volley.stderr.setEncoding('utf8');
    volley.stdout.on('data', (chunk) => {
      volleyLog += chunk;
      if (done) return;
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /volley echo listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
        if (m) finish(null, Number(m[1]));
      }
    });
    volley.stderr.on('data', (chunk) => {
      volleyLog += chunk;
    });
    volley.on('error', (e) => finish(new Error(`cannot start ${VOLLEY_BIN}: ${e.message}`)));
    volley.on('exit', (code, signal) => {
      finish(new Error(`volley exited early (code ${code}, signal ${signal}); output:\n${volleyLog}`));
    });
  });
}

// ---------------------------------------------- byte-counting TCP proxy

// Counts the bytes each way so that the test can see that a large,
// compressible message crosses the wire compressed in both directions.
const wire = { toServer: 0, toBrowser: 0 };

function startProxy(targetPort) {
  return new Promise((resolve, reject) => {
    proxyServer = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      proxySockets.add(client);
      proxySockets.add(upstream);
      client.on('data', (d) => {
        wire.toServer += d.length;
      });
      upstream.on('data', (d) => {
        wire.toBrowser += d.length;
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
        proxySockets.delete(client);
        proxySockets.delete(upstream);
      };
      client.on('error', end);
      upstream.on('error', end);
      client.on('close', end);
      upstream.on('close', end);
    });
    proxyServer.once('error', reject);
    proxyServer.listen(0, '127.0.0.1', () => resolve(proxyServer.address().port));
  });
}

// ------------------------------------------------------------- the page

// Runs in the browser. Everything that waits has its own timeout.
const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>volley permessage-deflate</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 24px; }
  h1 { font-size: 20px; }
  li.pass::marker { content: "\\2714  "; color: #1a7f37; }
  li.fail::marker { content: "\\2718  "; color: #cf222e; }
  li.fail { color: #cf222e; }
  .detail { color: #57606a; font-size: 13px; }
  #summary { font-weight: bold; margin-top: 16px; }
  code { background: #f0f0f0; padding: 1px 4px; }
</style></head>
<body>
<h1>volley echo &times; Chromium: permessage-deflate</h1>
<div id="info"></div>
<ul id="results"></ul>
<div id="summary">running&hellip;</div>
<script>
'use strict';
let ws = null;
const inbox = [];
const waiters = [];
let closeEvent = null;
let closeWaiter = null;

function deliver(item) {
  const w = waiters.shift();
  if (w) w(item); else inbox.push(item);
}

function nextMessage(ms) {
  if (inbox.length) return Promise.resolve(inbox.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      const i = waiters.indexOf(done);
      if (i >= 0) waiters.splice(i, 1);
      reject(new Error('no message within ' + ms + ' ms'));
    }, ms);
    function done(item) { clearTimeout(t); resolve(item); }
    waiters.push(done);
  });
}

window.wsOpen = (url, ms) => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('open: no open event within ' + ms + ' ms')), ms);
  ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => deliver({ data: e.data });
  ws.onerror = () => deliver({ error: 'error event' });
  ws.onclose = (e) => {
    closeEvent = { code: e.code, reason: e.reason, wasClean: e.wasClean };
    deliver({ error: 'closed (code ' + e.code + ')' });
    if (closeWaiter) closeWaiter(closeEvent);
    clearTimeout(t);
    reject(new Error('open: closed before open, code ' + e.code));
  };
  ws.onopen = () => {
    clearTimeout(t);
    resolve({ extensions: ws.extensions, protocol: ws.protocol, readyState: ws.readyState });
  };
});

function describe(x) {
  if (typeof x === 'string') return 'text, ' + x.length + ' UTF-16 units';
  if (x instanceof ArrayBuffer) return 'binary, ' + x.byteLength + ' bytes';
  return String(x);
}

async function echo(msg, ms) {
  ws.send(msg);
  const got = await nextMessage(ms);
  if (got.error) throw new Error(got.error);
  return got.data;
}

window.wsEchoText = async (text, ms) => {
  const got = await echo(text, ms);
  if (typeof got !== 'string') return { ok: false, detail: 'got ' + describe(got) };
  if (got === text) return { ok: true, detail: text.length + ' UTF-16 units' };
  let i = 0;
  while (i < got.length && got[i] === text[i]) i++;
  return { ok: false, detail: 'sent ' + text.length + ' units, got ' + got.length + ', first difference at ' + i };
};

window.wsEchoTextString = (s, repeat, ms) => window.wsEchoText(s.repeat(repeat), ms);

window.wsEchoBinary = async (size, ms) => {
  const sent = new Uint8Array(size);
  for (let i = 0; i < size; i++) sent[i] = (i * 31 + (i >>> 8) + (i >>> 16) * 7) & 0xff;
  const got = await echo(sent.buffer, ms);
  if (!(got instanceof ArrayBuffer)) return { ok: false, detail: 'got ' + describe(got) };
  const g = new Uint8Array(got);
  if (g.length !== size) return { ok: false, detail: 'sent ' + size + ' bytes, got ' + g.length };
  for (let i = 0; i < size; i++) {
    if (g[i] !== sent[i]) return { ok: false, detail: 'first differing byte at ' + i };
  }
  return { ok: true, detail: size + ' bytes' };
};

// Many messages sent back to back (context takeover across messages),
// echoes must come back complete and in order.
window.wsBurst = async (count, ms) => {
  const sent = [];
  for (let i = 0; i < count; i++) {
    const m = 'burst message #' + i + ' \\u00e9\\u00e8 ' + 'abcabcabc'.repeat(i % 13);
    sent.push(m);
    ws.send(m);
  }
  for (let i = 0; i < count; i++) {
    const got = await nextMessage(ms);
    if (got.error) return { ok: false, detail: 'after ' + i + ' echoes: ' + got.error };
    if (got.data !== sent[i]) return { ok: false, detail: 'echo #' + i + ' differs' };
  }
  return { ok: true, detail: count + ' messages in order' };
};

window.wsClose = (code, ms) => new Promise((resolve, reject) => {
  if (closeEvent) return resolve(closeEvent);
  const t = setTimeout(() => reject(new Error('close: no close event within ' + ms + ' ms')), ms);
  closeWaiter = (e) => { clearTimeout(t); resolve(e); };
  ws.close(code, 'bye');
});

window.showResult = (ok, name, detail) => {
  const li = document.createElement('li');
  li.className = ok ? 'pass' : 'fail';
  li.textContent = (ok ? 'PASS ' : 'FAIL ') + name + ' ';
  if (detail) {
    const d = document.createElement('span');
    d.className = 'detail';
    d.textContent = '(' + detail + ')';
    li.appendChild(d);
  }
  document.getElementById('results').appendChild(li);
};

window.showInfo = (html) => { document.getElementById('info').innerHTML = html; };
window.showSummary = (text, ok) => {
  const s = document.getElementById('summary');
  s.textContent = text;
  s.style.color = ok ? '#1a7f37' : '#cf222e';
};
</script>
</body></html>
`;

function startHttp() {
  return new Promise((resolve, reject) => {
    httpServer = http.createServer((req, res) => {
      if (req.url === '/' || req.url.startsWith('/?')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(PAGE_HTML);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
      }
    });
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', () => resolve(httpServer.address().port));
  });
}

// ------------------------------------------------------------------ main

function escapeHtml(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

async function main() {
  const volleyPort = await startVolley();
  log(`volley: ${VOLLEY_BIN} echo listening on 127.0.0.1:${volleyPort}`);
  const proxyPort = await startProxy(volleyPort);
  const httpPort = await startHttp();

  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-chromium-profile-'));
  context = await withTimeout(
    chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM_BIN,
      headless: true,
      timeout: 30_000,
      args: CHROMIUM_ARGS,
      viewport: { width: 960, height: 640 },
    }),
    40_000,
    'launching Chromium',
  );
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  page = context.pages()[0] || (await context.newPage());
  const browserVersion = context.browser()?.version() ?? '';
  page.on('pageerror', (e) => log(`page error: ${e.message}`));

  // Record the opening handshake as Chromium's network stack saw it.
  const handshake = { request: null, response: null };
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    handshake.request = e.request.headers;
  });
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    handshake.response = { status: e.response.status, headers: e.response.headers };
  });

  await page.goto(`http://127.0.0.1:${httpPort}/`, { timeout: STEP_TIMEOUT_MS });
  const ua = await page.evaluate(() => navigator.userAgent);
  log(`browser: ${browserVersion || ua}`);

  const evalStep = (what, fn, ...args) =>
    withTimeout(page.evaluate(fn, args.length === 1 ? args[0] : args), STEP_TIMEOUT_MS + 5_000, what);

  const record = async (name, ok, detail = '') => {
    check(name, ok, detail);
    await page
      .evaluate(([o, n, d]) => window.showResult(o, n, d), [Boolean(ok), name, detail])
      .catch(() => {});
  };

  // Connect through the counting proxy; the origin is http://127.0.0.1:<httpPort>.
  const url = `ws://127.0.0.1:${proxyPort}/`;
  let opened;
  try {
    opened = await evalStep('open', ([u, ms]) => window.wsOpen(u, ms), url, STEP_TIMEOUT_MS);
  } catch (e) {
    await record('WebSocket opens', false, e.message.split('\n')[0]);
    throw new Error('cannot continue without a connection');
  }
  await record('WebSocket opens', true, `readyState ${opened.readyState}`);
  const respExt = handshake.response
    ? Object.entries(handshake.response.headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')?.[1]
    : undefined;
  const reqExt = handshake.request
    ? Object.entries(handshake.request).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')?.[1]
    : undefined;
  log(`handshake: offered "${reqExt ?? '?'}", answered "${respExt ?? '(none)'}"`);
  await page.evaluate(
    (h) => window.showInfo(h),
    `<p>volley on port ${volleyPort} (via proxy ${proxyPort}); ${escapeHtml(browserVersion || ua)}</p>` +
      `<p>offered: <code>${escapeHtml(reqExt ?? '?')}</code><br>` +
      `answered: <code>${escapeHtml(respExt ?? '(none)')}</code><br>` +
      `<code>ws.extensions</code> = <code>${escapeHtml(opened.extensions)}</code></p>`,
  );

  await record(
    'ws.extensions contains permessage-deflate',
    /(^|[,\s])permessage-deflate(\s*;|\s*,|\s*$)/.test(opened.extensions),
    `ws.extensions = "${opened.extensions}"`,
  );

  const LONG_UNIT = 'The quick brown fox jumps over the lazy dog; ça déborde — 0123456789. ';
  const LONG_REPEAT = Math.ceil((100 * 1024) / Buffer.byteLength(LONG_UNIT));
  const LONG_BYTES = Buffer.byteLength(LONG_UNIT) * LONG_REPEAT;

  const steps = [
    {
      name: 'non-ASCII text round-trips',
      run: () =>
        evalStep(
          'non-ASCII text',
          ([t, ms]) => window.wsEchoText(t, ms),
          'héllo wörld — Grüße, ☃ 日本語のテキスト, 🎉🚀 𝄞, ½ € ß Ω ∑ ∞',
          STEP_TIMEOUT_MS,
        ),
    },
    {
      name: 'long compressible text (~100 KiB) round-trips',
      wire: true,
      run: () =>
        evalStep(
          'long text',
          ([s, n, ms]) => window.wsEchoTextString(s, n, ms),
          LONG_UNIT,
          LONG_REPEAT,
          STEP_TIMEOUT_MS,
        ),
      minBytes: LONG_BYTES,
    },
    {
      name: '1 MiB binary (ArrayBuffer, pattern) round-trips byte-equal',
      run: () => evalStep('binary 1 MiB', ([n, ms]) => window.wsEchoBinary(n, ms), 1024 * 1024, STEP_TIMEOUT_MS),
    },
    {
      name: '50 messages sent back to back echo in order',
      run: () => evalStep('burst', ([n, ms]) => window.wsBurst(n, ms), 50, STEP_TIMEOUT_MS),
    },
  ];

  for (const step of steps) {
    const before = { ...wire };
    let r;
    try {
      r = await step.run();
    } catch (e) {
      r = { ok: false, detail: e.message.split('\n')[0] };
    }
    await record(step.name, r.ok, r.detail);
    if (step.wire && r.ok) {
      // The echo arrived, so the proxy has already passed on every byte of it.
      const up = wire.toServer - before.toServer;
      const down = wire.toBrowser - before.toBrowser;
      const limit = Math.floor(step.minBytes / 10);
      await record(
        'long text is compressed on the wire both ways',
        up < limit && down < limit,
        `${step.minBytes} bytes of UTF-8: ${up} bytes browser→volley, ${down} bytes volley→browser (limit ${limit})`,
      );
    }
  }

  let closed;
  try {
    closed = await evalStep('close', ([c, ms]) => window.wsClose(c, ms), 1000, STEP_TIMEOUT_MS);
  } catch (e) {
    closed = null;
    await record('close(1000) completes with code 1000, wasClean', false, e.message.split('\n')[0]);
  }
  if (closed) {
    await record(
      'close(1000) completes with code 1000, wasClean',
      closed.code === 1000 && closed.wasClean === true,
      `code ${closed.code}, wasClean ${closed.wasClean}, reason "${closed.reason}"`,
    );
  }

}

// Screenshot of the page with every result written into it (also after a
// failure, as long as the page is up).
async function screenshot() {
  if (!page) return;
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  await page.evaluate(
    ([t, ok]) => window.showSummary(t, ok),
    [`${tally.summary()} (${secs} s)`, tally.failed === 0],
  );
  const shotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-browser-'));
  const shot = path.join(shotDir, 'deflate.png');
  await withTimeout(page.screenshot({ path: shot, fullPage: true, timeout: STEP_TIMEOUT_MS }), STEP_TIMEOUT_MS + 5_000, 'screenshot');
  log(`screenshot: ${shot}`);
}

let exitCode = 0;
try {
  await main();
} catch (e) {
  if (tally.failed === 0 || !/cannot continue/.test(e.message)) {
    check('test ran to completion', false, e.message.split('\n')[0]);
    const rest = e.message.split('\n').slice(1).join('\n');
    if (rest) log(rest);
  }
}
try {
  await screenshot();
} catch (e) {
  check('screenshot taken', false, e.message.split('\n')[0]);
}
await cleanup();
if (tally.failed > 0 && volleyLog.trim()) {
  log('--- volley output ---');
  log(volleyLog.trimEnd().split('\n').slice(-40).join('\n'));
}
log(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
log(tally.summary());
exitCode = tally.failed > 0 || tally.passed === 0 ? 1 : 0;
liftTimeLimit();
process.exit(exitCode);
