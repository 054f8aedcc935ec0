// End-to-end test of `volley serve` (demo mode) in headless Chromium.
//
// Starts `$VOLLEY_BIN serve --listen 127.0.0.1:0 --api-key K --admin-key A`,
// reads the bound address from the first stdout line, and drives Debian's
// Chromium through playwright-core:
//
//   1. the hub serves the committed assets (/, /admin, /volley.js, /assets/*)
//      byte for byte;
//   2. two pages join the chat (one through the name form with the keyboard,
//      one through ?name=), see each other in the presence list and exchange
//      messages; user text is rendered as text, never as HTML;
//   3. the HTTP API disconnects page B by its client id (reconnect: true) and
//      publishes to chat:lobby while it is away; page B reconnects by itself
//      with a new client id and shows every one of those messages, none
//      twice, in the same order as page A;
//   4. the dashboard chart moves;
//   5. the admin page (key from the URL hash) shows the connections and the
//      chat channel's subscribers; a wrong key is refused.
//
// One line per check, then `N passed, M failed`; exit status 1 on any failure.
// Screenshots go to E2E_SCREENSHOTS (default <repo>/target/e2e-screenshots).
//
// Env:
//   VOLLEY_BIN       volley binary (default: <repo>/target/release/volley)
//   CHROMIUM_BIN     Chromium binary (default: /usr/bin/chromium)
//   E2E_TIMEOUT      overall time limit in seconds (default: 120)
//   E2E_SCREENSHOTS  screenshot folder

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { Tally, installGuards, log } from '../browser/harness.mjs';
import { REPO, startHub } from './hub.mjs';
import {
  clientId,
  closeChromium,
  launchChromium,
  messages,
  openPage as openPageIn,
  runScenario,
  sameChat,
  say,
  seeEachOther,
  shot as shotIn,
  stepper,
  waitConnected,
  waitForText,
} from './pages.mjs';

const OVERALL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT || 120) * 1000;
const SHOTS = path.resolve(REPO, process.env.E2E_SCREENSHOTS || 'target/e2e-screenshots');
const ASSETS = path.join(REPO, 'crates', 'volley-hub', 'assets');
const STEP_MS = 15_000;
const API_KEY = `e2e-api-${randomBytes(8).toString('hex')}`;
const ADMIN_KEY = `e2e-admin-${randomBytes(8).toString('hex')}`;
const AWAY_MESSAGES = 5;

const tally = new Tally();
const check = tally.check.bind(tally);
let hub = null;
let browser = null;
let cleaningUp = null;
const pageErrors = [];


/** Runs a check whose body may throw or time out; a throw is a failure, not a crash. */
const step = stepper(tally, STEP_MS);

// ---------------------------------------------------------------- cleanup

async function cleanup() {
  if (cleaningUp) return cleaningUp;
  cleaningUp = (async () => {
    const b = browser;
    browser = null;
    await closeChromium(b);
    if (hub) await hub.stop();
  })();
  return cleaningUp;
}

installGuards({
  timeoutMs: OVERALL_TIMEOUT_MS,
  tally,
  cleanup,
  onExit: () => hub?.killNow(),
});

// ---------------------------------------------------------------- page helpers

const openPage = (name, url, viewport, consoleErrors = true) =>
  openPageIn(browser, name, url, { errors: pageErrors, stepMs: STEP_MS, viewport, consoleErrors });
const shot = (page, name) => shotIn(page, SHOTS, name);

// ---------------------------------------------------------------- the scenario

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  log(`screenshots: ${SHOTS}`);
  hub = await startHub({ apiKey: API_KEY, extraArgs: ['--admin-key', ADMIN_KEY], log });
  const base = hub.base;
  log(`volley serve listening on ${base}/`);

  await step('the hub serves the committed assets byte for byte', async () => {
    const files = [
      ['/', 'index.html'],
      ['/admin', 'admin.html'],
      ['/volley.js', 'volley.js'],
      ['/assets/app.js', 'app.js'],
      ['/assets/admin.js', 'admin.js'],
      ['/assets/style.css', 'style.css'],
    ];
    const stale = [];
    for (const [url, file] of files) {
      const response = await fetch(base + url);
      const body = Buffer.from(await response.arrayBuffer());
      if (response.status !== 200 || !body.equals(fs.readFileSync(path.join(ASSETS, file)))) {
        stale.push(`${url} (HTTP ${response.status}, ${body.length} bytes)`);
      }
    }
    if (stale.length > 0) throw new Error(`differs from crates/volley-hub/assets (rebuild the binary?): ${stale.join(', ')}`);
    return `${files.length} files`;
  });

  browser = await launchChromium();
  log(`chromium ${browser.version()}`);

  const pageA = await openPage('A', `${base}/`);
  // The ticker runs from the first paint: the chart moves before anyone joins.
  await step('page A: the chart moves before joining the chat', async () => {
    const lastT = () => pageA.evaluate(() => Number(document.getElementById('ticker-chart').dataset.lastT || 0));
    await pageA.waitForFunction(() => Number(document.getElementById('ticker-chart').dataset.count || 0) >= 1);
    const first = await lastT();
    await pageA.waitForFunction(
      (t) => Number(document.getElementById('ticker-chart').dataset.lastT || 0) > t,
      first,
    );
    const joined = await pageA.evaluate(() => !document.getElementById('room').hidden);
    if (joined) throw new Error('the page joined the chat by itself');
    return `last point ${first} -> ${await lastT()} while the name form is shown`;
  });

  // Page A joins through the name form, with the keyboard only.
  let idA = null;
  await step('page A: joins through the name form with the keyboard', async () => {
    await pageA.focus('#name-input');
    await pageA.keyboard.press('ControlOrMeta+A');
    await pageA.keyboard.type('Ada');
    await pageA.keyboard.press('Enter');
    idA = await waitConnected(pageA);
    const focused = await pageA.evaluate(() => document.activeElement?.id);
    if (focused !== 'chat-input') throw new Error(`focus went to ${focused}, not the message input`);
    return `client ${idA}`;
  });

  const pageB = await openPage('B', `${base}/?name=Grace`);
  let idB = null;
  await step('page B: joins with ?name=', async () => {
    idB = await waitConnected(pageB);
    return `client ${idB}`;
  });

  await step('both pages see each other in the presence list, by name', () =>
    seeEachOther([pageA, idA, 'Ada'], [pageB, idB, 'Grace']),
  );

  await step('A and B exchange messages (sent with Enter)', async () => {
    await say(pageA, 'hello from Ada', pageB);
    await say(pageB, 'hi Ada, Grace here', pageA);
    const fromA = (await messages(pageB)).find((m) => m.text === 'hello from Ada');
    if (fromA?.author !== 'Ada') throw new Error(`author shown as ${JSON.stringify(fromA?.author)}`);
  });

  await step('user text is shown as text, never as HTML', async () => {
    const evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
    await pageA.fill('#chat-input', evil);
    await pageA.press('#chat-input', 'Enter');
    await waitForText(pageB, evil);
    const injected = await pageB.evaluate(() => document.querySelectorAll('#messages img, #messages b').length);
    const pwned = await pageB.evaluate(() => window.__pwned === 1);
    if (injected !== 0 || pwned) throw new Error(`markup was interpreted (${injected} elements, pwned=${pwned})`);
  });

  log(`screenshot: ${await shot(pageA, '01-chat-page-a')}`);
  log(`screenshot: ${await shot(pageB, '02-chat-page-b')}`);

  // Disconnect B through the HTTP API and publish while it is away.
  const awayTexts = Array.from({ length: AWAY_MESSAGES }, (_, i) => `while away ${i + 1}`);
  const awayOffsets = [];
  let statesWhilePublishing = [];
  await step('HTTP API disconnects page B by client id and publishes while it is away', async () => {
    const before = Number((await pageB.locator('body').getAttribute('data-chat-subscriptions')) ?? '0');
    const result = await hub.api('disconnect', { client: idB, reconnect: true, reason: 'e2e test' });
    if (result.disconnected !== 1) throw new Error(`disconnected ${JSON.stringify(result)}`);
    for (const text of awayTexts) {
      const r = await hub.api('publish', { channel: 'chat:lobby', data: { name: 'api', text } });
      awayOffsets.push(r.offset);
      statesWhilePublishing.push(await pageB.locator('#status').getAttribute('data-state'));
    }
    // B really went away: it subscribes again on a new connection with a new client id.
    await pageB.waitForFunction((n) => Number(document.body.dataset.chatSubscriptions || 0) > n, before);
    const newId = await waitConnected(pageB);
    if (newId === idB) throw new Error('page B still has its old client id');
    return `offsets ${awayOffsets.join(',')}; B's status while publishing: ${statesWhilePublishing.join(',')}; new client ${newId}`;
  });

  await step('page B reconnected by itself and recovered', async () => {
    const how = await pageB.locator('body').getAttribute('data-chat');
    if (how !== 'recovered') throw new Error(`the resubscription reports ${JSON.stringify(how)}, not "recovered"`);
    // Publications delivered by the recovery itself (not live): proof they were published while B was away.
    const recovered = Number((await pageB.locator('body').getAttribute('data-chat-recovered')) ?? '0');
    if (recovered < 1) throw new Error('no publication came through recovery');
    const status = await pageB.locator('#status').textContent();
    return `${recovered} of ${AWAY_MESSAGES} came through recovery, the rest live; status: ${status}`;
  });

  await step(`page B shows all ${AWAY_MESSAGES} messages published while away, none twice, in A's order`, async () => {
    for (const text of awayTexts) await waitForText(pageB, text);
    await waitForText(pageA, awayTexts[awayTexts.length - 1]);
    const summary = await sameChat(pageA, pageB, awayTexts);
    const b = await messages(pageB);
    const apiShown = b.filter((m) => awayOffsets.includes(m.offset)).map((m) => m.author);
    if (apiShown.some((author) => author !== 'api')) throw new Error(`names of API messages: ${apiShown.join(',')}`);
    return summary;
  });

  await step('presence is whole again after the reconnect', async () => {
    const idB2 = await clientId(pageB);
    await pageA.locator(`#presence li[data-client="${idB2}"]`).waitFor();
    await pageA.waitForFunction((old) => !document.querySelector(`#presence li[data-client="${old}"]`), idB);
    await pageB.locator(`#presence li[data-client="${idA}"]`).waitFor();
  });

  log(`screenshot: ${await shot(pageB, '03-page-b-after-reconnect')}`);

  await step('the dashboard chart moves', async () => {
    const read = () =>
      pageA.evaluate(() => {
        const chart = document.getElementById('ticker-chart');
        return {
          count: Number(chart.dataset.count || 0),
          lastT: Number(chart.dataset.lastT || 0),
          points: document.getElementById('ticker-line').getAttribute('points') || '',
          price: document.getElementById('ticker-price').textContent,
        };
      });
    await pageA.waitForFunction(() => Number(document.getElementById('ticker-chart').dataset.count || 0) >= 2);
    const first = await read();
    await pageA.waitForFunction(
      (t) => Number(document.getElementById('ticker-chart').dataset.lastT || 0) > t,
      first.lastT,
    );
    await pageA.waitForFunction(
      (t) => Number(document.getElementById('ticker-chart').dataset.lastT || 0) > t,
      first.lastT + 900,
    );
    const second = await read();
    if (second.points === first.points) throw new Error('the polyline did not change');
    if (!/^\d+\.\d\d$/.test(second.price ?? '')) throw new Error(`price shows ${JSON.stringify(second.price)}`);
    return `${first.count} -> ${second.count} points, price ${second.price}`;
  });

  log(`screenshot: ${await shot(pageA, '04-dashboard-page-a')}`);

  const phone = await openPage('phone', `${base}/?name=Phone`, { width: 390, height: 844 });
  await step('the demo fits a phone screen (no horizontal scroll)', async () => {
    await waitConnected(phone);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`${overflow} px wider than the screen`);
  });
  log(`screenshot: ${await shot(phone, '05-phone')}`);

  const admin = await openPage('admin', `${base}/admin#key=${encodeURIComponent(ADMIN_KEY)}`);
  await step('admin page: connections, subscribers of chat:lobby and message rates', async () => {
    await admin.waitForSelector('#admin-status[data-state="connected"]');
    await admin.waitForFunction(() => Number(document.getElementById('connections').textContent) >= 3);
    const row = admin.locator('#channels tr[data-channel="chat:lobby"] td').first();
    await admin.waitForFunction(() => {
      const cell = document.querySelector('#channels tr[data-channel="chat:lobby"] td');
      return cell !== null && Number(cell.textContent) >= 3;
    });
    await admin.waitForFunction(() => Number(document.getElementById('messages-out').textContent.replace(/[^\d.]/g, '')) > 0);
    return `connections ${await admin.locator('#connections').textContent()}, chat:lobby subscribers ${await row.textContent()}, messages out/s ${await admin.locator('#messages-out').textContent()}`;
  });
  log(`screenshot: ${await shot(admin, '06-admin')}`);

  // (Its refused request logs a console error by design: not counted.)
  const wrong = await openPage('admin-wrong-key', `${base}/admin#key=not-the-key`, undefined, false);
  await step('admin page: a wrong key is refused and the key is asked for', async () => {
    await wrong.waitForSelector('#key-form:not([hidden])');
    const stats = await fetch(`${base}/admin/api/stats`, { headers: { Authorization: 'Bearer not-the-key' } });
    if (stats.status !== 401) throw new Error(`/admin/api/stats with a wrong key: HTTP ${stats.status}`);
  });

  check('no uncaught errors in the pages', pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));
}

await runScenario(main, {
  tally,
  cleanup,
  onFailure: () => hub && log(`volley output (last 2000 chars):\n${hub.output.slice(-2000)}`),
  onEnd: () => log(`screenshots in ${SHOTS}`),
});
