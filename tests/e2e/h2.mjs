// Chromium over HTTP/2: the demo page loaded from `volley serve` over https
// (a self-signed certificate made by openssl; Chromium told to accept it with
// --ignore-certificate-errors) runs its WebSockets over HTTP/2 (RFC 8441
// extended CONNECT on the page's own HTTP/2 connection). Checked from both
// ends: the page was fetched over h2, and while it is connected the hub's
// /metrics count its connections as websocket-h2 and none as websocket-h1;
// the page chats with a second page to show the WebSocket carries the session.
//
// One line per check, then `h2: N passed, M failed`; exit status 1 on any failure.
// Env: VOLLEY_BIN, CHROMIUM_BIN, E2E_TIMEOUT (seconds, default 60).

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Tally, installGuards, log } from '../browser/harness.mjs';
import { metricValue, selfSignedCert, startHub } from './hub.mjs';
import { closeChromium, launchChromium, openPage, runScenario, say, stepper, waitConnected } from './pages.mjs';

const OVERALL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT || 60) * 1000;
const STEP_MS = 15_000;
const API_KEY = `e2e-api-${randomBytes(8).toString('hex')}`;
const METRIC = 'volley_connections_by_transport';

const tally = new Tally('h2');
const step = stepper(tally, STEP_MS);
const pageErrors = [];
let hub = null;
let browser = null;
let dir = null;

async function cleanup() {
  const b = browser;
  browser = null;
  await closeChromium(b);
  if (hub) await hub.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

installGuards({ timeoutMs: OVERALL_TIMEOUT_MS, tally, cleanup, onExit: () => hub?.killNow() });

/** The hub's open connections by transport: {h1, h2}. */
async function byTransport() {
  const text = await hub.metrics();
  const h1 = metricValue(text, METRIC, { transport: 'websocket-h1' });
  const h2 = metricValue(text, METRIC, { transport: 'websocket-h2' });
  if (h2 === null) throw new Error(`no ${METRIC}{transport="websocket-h2"} in /metrics`);
  return { h1: h1 ?? 0, h2 };
}

async function main() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-e2e-h2-'));
  const tls = selfSignedCert(dir);
  hub = await startHub({ apiKey: API_KEY, tls, log });
  log(`volley serve listening on ${hub.base}/`);

  browser = await launchChromium(['--ignore-certificate-errors']);
  log(`chromium ${browser.version()}`);

  const options = { errors: pageErrors, stepMs: STEP_MS };
  const pageA = await openPage(browser, 'A', `${hub.base}/?name=Ada&transports=websocket`, options);
  let idA = null;
  await step('the demo page is served over HTTP/2 and its chat connects over the WebSocket', async () => {
    const protocol = await pageA.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol);
    if (protocol !== 'h2') throw new Error(`the page came over ${JSON.stringify(protocol)}, not h2`);
    idA = await waitConnected(pageA);
    const transport = await pageA.locator('body').getAttribute('data-transport');
    if (transport !== 'websocket') throw new Error(`the SDK reports ${JSON.stringify(transport)}`);
    return `page over ${protocol}, client ${idA}`;
  });

  await step(`while the page is connected, /metrics count its WebSockets as websocket-h2 (none as websocket-h1)`, async () => {
    // The page has two WebSockets: the chat and the ticker (both connected once the ticker chart has a point).
    await pageA.waitForFunction(() => Number(document.getElementById('ticker-chart').dataset.count || 0) >= 1);
    const { h1, h2 } = await byTransport();
    if (h2 < 1) throw new Error(`${METRIC}{transport="websocket-h2"} = ${h2}`);
    if (h1 !== 0) throw new Error(`${METRIC}{transport="websocket-h1"} = ${h1}: a WebSocket went over HTTP/1.1`);
    return `websocket-h2 ${h2}, websocket-h1 ${h1}`;
  });

  const pageB = await openPage(browser, 'B', `${hub.base}/?name=Grace&transports=websocket`, options);
  await step('a second page chats with the first over HTTP/2 WebSockets', async () => {
    await waitConnected(pageB);
    await say(pageA, 'over h2 from Ada', pageB);
    await say(pageB, 'over h2 from Grace', pageA);
    const { h1, h2 } = await byTransport();
    if (h2 < 2 || h1 !== 0) throw new Error(`websocket-h2 ${h2}, websocket-h1 ${h1}`);
    return `websocket-h2 ${h2}`;
  });

  await step('closing the pages brings websocket-h2 back to 0', async () => {
    await pageA.context().close();
    await pageB.context().close();
    for (;;) {
      const { h2 } = await byTransport();
      if (h2 === 0) return 'websocket-h2 0';
      await new Promise((resolve) => setTimeout(resolve, 100)); // polling the metric, bounded by the step
    }
  });

  tally.check('no uncaught errors in the pages', pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));
}

await runScenario(main, {
  tally,
  cleanup,
  onFailure: () => hub && log(`volley output (last 2000 chars):\n${hub.output.slice(-2000)}`),
});
