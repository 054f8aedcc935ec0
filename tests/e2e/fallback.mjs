// Fallback through a real proxy: Debian's nginx in front of `volley serve`,
// configured like proxies that break WebSockets (tests/e2e/nginx.mjs), and
// the demo in headless Chromium behind it with the SDK's default transports
// (WebSocket, then SSE, then long-polling):
//
//   1. nginx "no-upgrade" (no Upgrade header passed, `Connection: ""`): a
//      WebSocket handshake through it is refused; page A behind it falls back
//      to SSE and chats with page B, which uses a WebSocket directly to the
//      hub; A is disconnected through the HTTP API, messages are published
//      while it is away, and A comes back (trying the WebSocket first, as
//      nginx's access log shows, then SSE again) with every one of them, none
//      twice, in B's order;
//   2. nginx "buffered" (event streams held back until they end): page C
//      behind it gets no SSE event in time and falls back to long-polling,
//      chats with B, and recovers every message published while it was
//      disconnected.
//
// One line per check, then `fallback: N passed, M failed`; exit status 1 on any failure.
// Env: VOLLEY_BIN, CHROMIUM_BIN, NGINX_BIN (default /usr/sbin/nginx),
// E2E_TIMEOUT (seconds, default 180).

import { randomBytes } from 'node:crypto';

import WebSocket from 'ws';

import { Tally, installGuards, log } from '../browser/harness.mjs';
import { metricValue, startHub } from './hub.mjs';
import { startNginx } from './nginx.mjs';
import {
  clientId,
  closeChromium,
  launchChromium,
  openPage,
  runScenario,
  sameChat,
  say,
  seeEachOther,
  stepper,
  waitConnected,
  waitForText,
} from './pages.mjs';

const OVERALL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT || 180) * 1000;
const STEP_MS = 15_000;
// Behind the buffering proxy a (re)connect waits for the SSE attempt to time out (10 s) first.
const FALLBACK_MS = 45_000;
const API_KEY = `e2e-api-${randomBytes(8).toString('hex')}`;
const AWAY_MESSAGES = 5;

const tally = new Tally('fallback');
const step = stepper(tally, STEP_MS);
const pageErrors = [];
const proxies = [];
let hub = null;
let browser = null;

async function cleanup() {
  const b = browser;
  browser = null;
  await closeChromium(b);
  for (const p of proxies.splice(0)) await p.stop();
  if (hub) await hub.stop();
}

installGuards({
  timeoutMs: OVERALL_TIMEOUT_MS,
  tally,
  cleanup,
  onExit: () => {
    for (const p of proxies) p.killNow();
    hub?.killNow();
  },
});

/** The transport the page's chat client reports (`body[data-transport]`). */
const transportOf = (page) => page.locator('body').getAttribute('data-transport');

/** A WebSocket handshake to `base` (http://host:port); resolves with how it ended. */
function tryWebSocket(base) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/connection/websocket`, ['volley.v1']);
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(`HTTP ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', (e) => resolve(`error: ${e.message}`));
  });
}


/**
 * Disconnects `page` through the HTTP API, publishes AWAY_MESSAGES while it is
 * away, and waits until it has subscribed again on a new connection; the texts.
 */
async function disconnectAndPublish(page, label) {
  const id = await clientId(page);
  const before = Number((await page.locator('body').getAttribute('data-chat-subscriptions')) ?? '0');
  const result = await hub.api('disconnect', { client: id, reconnect: true, reason: 'e2e fallback' });
  if (result.disconnected !== 1) throw new Error(`disconnected ${JSON.stringify(result)}`);
  const texts = Array.from({ length: AWAY_MESSAGES }, (_, i) => `${label} away ${i + 1}`);
  for (const text of texts) await hub.api('publish', { channel: 'chat:lobby', data: { name: 'api', text } });
  await page.waitForFunction((n) => Number(document.body.dataset.chatSubscriptions || 0) > n, before, { timeout: FALLBACK_MS });
  const newId = await waitConnected(page);
  if (newId === id) throw new Error('the page still has its old client id');
  return texts;
}

/** Checks that `page` recovered `texts` (the resubscription says so; each shown once, in `other`'s order). */
async function recoveredAll(page, other, texts) {
  const how = await page.locator('body').getAttribute('data-chat');
  if (how !== 'recovered') throw new Error(`the resubscription reports ${JSON.stringify(how)}, not "recovered"`);
  for (const text of texts) await waitForText(page, text);
  await waitForText(other, texts[texts.length - 1]);
  return sameChat(other, page, texts);
}

async function main() {
  hub = await startHub({ apiKey: API_KEY, log });
  log(`volley serve listening on ${hub.base}/`);
  const blocking = await startNginx({ upstream: hub.addr, mode: 'no-upgrade', log });
  proxies.push(blocking);
  const buffering = await startNginx({ upstream: hub.addr, mode: 'buffered', log });
  proxies.push(buffering);

  await step('nginx no-upgrade refuses a WebSocket handshake that the hub accepts directly', async () => {
    const direct = await tryWebSocket(hub.base);
    const proxied = await tryWebSocket(blocking.base);
    if (direct !== 'open') throw new Error(`directly: ${direct}`);
    if (proxied === 'open') throw new Error('the WebSocket opened through nginx');
    return `directly: open; through nginx: ${proxied}`;
  });

  browser = await launchChromium();
  log(`chromium ${browser.version()}`);
  const options = { errors: pageErrors, stepMs: FALLBACK_MS, consoleErrors: false };

  // ---- 1. SSE behind the proxy that blocks WebSocket -----------------------------------
  const pageA = await openPage(browser, 'A', `${blocking.base}/?name=Ada`, options);
  const pageB = await openPage(browser, 'B', `${hub.base}/?name=Grace&transports=websocket`, options);
  let idA = null;
  let idB = null;
  await step('page A behind nginx no-upgrade falls back to SSE; page B is on a WebSocket directly', async () => {
    idA = await waitConnected(pageA);
    idB = await waitConnected(pageB);
    const [a, b] = [await transportOf(pageA), await transportOf(pageB)];
    if (a !== 'sse' || b !== 'websocket') throw new Error(`A over ${a}, B over ${b}`);
    const sse = metricValue(await hub.metrics(), 'volley_connections_by_transport', { transport: 'sse' });
    if (!(sse >= 1)) throw new Error(`volley_connections_by_transport{transport="sse"} = ${sse}`);
    return `A ${idA} over sse, B ${idB} over websocket; sse connections ${sse}`;
  }, FALLBACK_MS);

  await step('A (SSE) and B (WebSocket) see each other and chat both ways', async () => {
    await seeEachOther([pageA, idA, 'Ada'], [pageB, idB, 'Grace']);
    await say(pageA, 'Ada over SSE', pageB);
    await say(pageB, 'Grace over a WebSocket', pageA);
  });

  let awayA = [];
  let handshakesBefore = 0;
  const handshakes = () => blocking.requests('GET', '/connection/websocket');
  await step(`HTTP API disconnects A (SSE); ${AWAY_MESSAGES} messages published while it is away; A is back`, async () => {
    handshakesBefore = handshakes();
    awayA = await disconnectAndPublish(pageA, 'A');
    return `new client ${await clientId(pageA)}`;
  }, FALLBACK_MS);

  await step('A tried the WebSocket first again, then SSE', async () => {
    const after = handshakes();
    const transport = await transportOf(pageA);
    if (after <= handshakesBefore) throw new Error(`no WebSocket handshake went through nginx (${handshakesBefore} -> ${after})`);
    if (transport !== 'sse') throw new Error(`A is over ${transport}`);
    return `WebSocket handshakes through nginx ${handshakesBefore} -> ${after}; then sse`;
  });

  await step(`A recovered all ${AWAY_MESSAGES} messages published while away, none twice, in B's order`, () =>
    recoveredAll(pageA, pageB, awayA),
  );

  // ---- 2. long-polling behind the proxy that buffers ------------------------------------
  const pageC = await openPage(browser, 'C', `${buffering.base}/?name=Lin`, options);
  let idC = null;
  await step('page C behind nginx buffered gets no SSE event in time and falls back to long-polling', async () => {
    idC = await waitConnected(pageC);
    const c = await transportOf(pageC);
    if (c !== 'long-poll') throw new Error(`C over ${c}`);
    const polls = metricValue(await hub.metrics(), 'volley_connections_by_transport', { transport: 'long-poll' });
    if (!(polls >= 1)) throw new Error(`volley_connections_by_transport{transport="long-poll"} = ${polls}`);
    return `C ${idC} over long-poll; long-poll connections ${polls}`;
  }, FALLBACK_MS);

  await step('C (long-polling) and B (WebSocket) chat both ways', async () => {
    await seeEachOther([pageC, idC, 'Lin'], [pageB, idB, 'Grace']);
    await say(pageC, 'Lin over long-polling', pageB);
    await say(pageB, 'Grace to Lin', pageC);
  });

  let awayC = [];
  await step(`HTTP API disconnects C (long-polling); ${AWAY_MESSAGES} messages published while it is away; C is back`, async () => {
    awayC = await disconnectAndPublish(pageC, 'C');
    const c = await transportOf(pageC);
    if (c !== 'long-poll') throw new Error(`C came back over ${c}`);
    return `new client ${await clientId(pageC)} over long-poll`;
  }, FALLBACK_MS);

  await step(`C recovered all ${AWAY_MESSAGES} messages published while away, none twice, in B's order`, () =>
    recoveredAll(pageC, pageB, awayC),
  );

  tally.check('no uncaught errors in the pages', pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));
}

await runScenario(main, {
  tally,
  cleanup,
  onFailure: () => {
    for (const p of proxies) log(`nginx ${p.port} error log (last 1000 chars):\n${p.errorLog().slice(-1000)}`);
    if (hub) log(`volley output (last 2000 chars):\n${hub.output.slice(-2000)}`);
  },
});
