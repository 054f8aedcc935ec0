// What the e2e scenarios in Chromium share (demo.mjs, cluster.mjs, h2.mjs,
// fallback.mjs): launch and close Chromium, run a scenario to its summary,
// open a demo page, wait until it is connected, read the chat as rendered.
import path from 'node:path';

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_BIN, log, withTimeout } from '../browser/harness.mjs';

/** Launches Debian's Chromium, headless, with the shared flags and `extraArgs`. */
export function launchChromium(extraArgs = []) {
  return withTimeout(
    chromium.launch({ executablePath: CHROMIUM_BIN, headless: true, timeout: 30_000, args: [...CHROMIUM_ARGS, ...extraArgs] }),
    40_000,
    'launching Chromium',
  );
}

/** Closes `browser` (if any) within 10 s; a failure is a warning. */
export async function closeChromium(browser) {
  if (!browser) return;
  await withTimeout(browser.close(), 10_000, 'closing Chromium').catch((e) => log(`warning: ${e.message}`));
}

/**
 * Runs a scenario's `main` to the end and exits: a throw is one failed check
 * of `tally`; when any check failed, `onFailure()` (print the services' logs)
 * runs before `cleanup()`; `onEnd()` after it; then the summary line, and
 * exit status 1 on any failure.
 */
export async function runScenario(main, { tally, cleanup, onFailure = () => {}, onEnd = () => {} }) {
  let crashed = false;
  try {
    await main();
  } catch (e) {
    crashed = true;
    tally.check('scenario ran to the end', false, e.message.split('\n').slice(0, 8).join(' / '));
  }
  if (crashed || tally.failed > 0) onFailure();
  await cleanup();
  onEnd();
  log(tally.summary());
  process.exit(tally.failed > 0 ? 1 : 0);
}

/**
 * Opens `url` in a new context of `browser`. Uncaught errors (and console
 * errors unless `consoleErrors` is false) are pushed to `errors`.
 */
export async function openPage(browser, name, url, { errors, stepMs, viewport = { width: 1100, height: 760 }, consoleErrors = true, initScript } = {}) {
  const context = await browser.newContext({ viewport });
  if (initScript) await context.addInitScript(initScript.fn, initScript.arg);
  const page = await context.newPage();
  if (stepMs) page.setDefaultTimeout(stepMs);
  page.on('pageerror', (e) => errors?.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (consoleErrors && m.type() === 'error') errors?.push(`${name} console: ${m.text()}`);
  });
  await page.goto(url);
  return page;
}

/** The page's current client id (`data-client-id`). */
export const clientId = (page) => page.locator('body').getAttribute('data-client-id');

/** Waits until the page's chat is connected; its client id. */
export async function waitConnected(page) {
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForSelector('body[data-client-id]');
  return clientId(page);
}

/** The rendered chat messages: [{offset, author, text}] in page order. */
export function messages(page) {
  return page.$$eval('#messages li', (items) =>
    items.map((li) => ({
      offset: li.dataset.offset === undefined ? null : Number(li.dataset.offset),
      author: li.querySelector('.author')?.textContent ?? '',
      text: li.querySelector('.text')?.textContent ?? '',
    })),
  );
}

/** Waits until a chat message with this text is shown. */
export async function waitForText(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li .text')].some((n) => n.textContent === t),
    text,
  );
}

/** Saves a full-page screenshot as DIR/NAME.png; the file. */
export async function shot(page, dir, name) {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Checks that `b` shows each of `texts` exactly once, that its messages are
 * in offset order without duplicates, and that `a` shows the same list.
 * Throws with what differs; returns a summary.
 */
export async function sameChat(a, b, texts) {
  const mb = await messages(b);
  const ma = await messages(a);
  const offsets = mb.map((m) => m.offset);
  if (offsets.some((o) => o === null)) throw new Error('a chat message without an offset');
  if (new Set(offsets).size !== offsets.length) throw new Error(`duplicate offsets: ${offsets.join(',')}`);
  const shown = mb.map((m) => m.text);
  for (const text of texts) {
    const n = shown.filter((t) => t === text).length;
    if (n !== 1) throw new Error(`${JSON.stringify(text)} shown ${n} times`);
  }
  const sorted = [...offsets].sort((x, y) => x - y);
  if (offsets.join() !== sorted.join()) throw new Error(`out of order: ${offsets.join(',')}`);
  const key = (list) => list.map((m) => `${m.offset}:${m.author}:${m.text}`).join('\n');
  if (key(ma) !== key(mb)) throw new Error(`the pages differ:\n${key(ma)}\n--\n${key(mb)}`);
  return `${mb.length} messages, offsets ${offsets[0]}..${offsets[offsets.length - 1]}`;
}

/** Waits until each page lists the other's client, by name, in its presence list. */
export async function seeEachOther([pageA, idA, nameA], [pageB, idB, nameB]) {
  for (const [page, other, name] of [
    [pageA, idB, nameB],
    [pageB, idA, nameA],
  ]) {
    const item = page.locator(`#presence li[data-client="${other}"]`);
    await item.waitFor();
    const text = await item.textContent();
    if (!text.includes(name)) throw new Error(`presence entry for ${other} reads ${JSON.stringify(text)}`);
  }
}

/** Sends `text` from `page` with Enter, and waits until `other` shows it. */
export async function say(page, text, other) {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
  await waitForText(other, text);
}

/**
 * `step(name, fn, ms = defaultMs)`: one check of `tally` whose body may throw
 * or time out (a failure, not a crash); a string it returns is the detail.
 */
export function stepper(tally, defaultMs) {
  return async (name, fn, ms = defaultMs) => {
    try {
      const detail = await withTimeout(Promise.resolve().then(fn), ms + 5_000, name);
      return tally.check(name, true, typeof detail === 'string' ? detail : '');
    } catch (e) {
      return tally.check(name, false, e.message.split('\n')[0]);
    }
  };
}
