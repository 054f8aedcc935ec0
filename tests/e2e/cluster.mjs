// The cluster in headless Chromium: `scripts/cluster.sh` starts three
// `volley serve --engine redis` nodes (demo mode) on two Redis shards with
// HAProxy in front, and two pages load the demo through HAProxy.
//
// Page A's first WebSockets go to node 0 and page B's to node 1 (an init
// script points the page's WebSocket at that node until one of its sockets
// closes; from then on the page connects to its own origin, HAProxy, as it
// does unaided), so the two pages are on two different nodes:
//
//   1. A and B see each other in the presence list and chat across nodes;
//   2. node 1 is killed with SIGKILL; while B is away A writes and the HTTP
//      API publishes; B reconnects by itself through HAProxy to another node,
//      recovers there (`recovered`), and shows every message once, in A's
//      order; A sees B's new connection in presence, and B's old one leaves
//      the channel's presence when its dead node's entries expire (30 s).
//
// One line per check, then `cluster: N passed, M failed`; exit status 1 on any
// failure. Screenshots go to E2E_SCREENSHOTS (default target/e2e-screenshots).
//
// Env: VOLLEY_BIN (default target/release/volley), CHROMIUM_BIN,
// E2E_TIMEOUT (overall limit in seconds, default 150).

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Tally, installGuards, log } from '../browser/harness.mjs';
import { REPO, VOLLEY_BIN, api } from './hub.mjs';
import {
  closeChromium,
  launchChromium,
  openPage,
  runScenario,
  sameChat,
  say,
  seeEachOther,
  shot,
  stepper,
  waitConnected,
  waitForText,
} from './pages.mjs';

const OVERALL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT || 150) * 1000;
const SHOTS = path.resolve(REPO, process.env.E2E_SCREENSHOTS || 'target/e2e-screenshots');
const STEP_MS = 15_000;
const SCRIPT = path.join(REPO, 'scripts', 'cluster.sh');
const API_KEY = `e2e-api-${randomBytes(8).toString('hex')}`;
const ADMIN_KEY = `e2e-admin-${randomBytes(8).toString('hex')}`;

const tally = new Tally('cluster');
const check = tally.check.bind(tally);
const pageErrors = [];
let dir = null;
let browser = null;
let cleaningUp = null;

/** `scripts/cluster.sh COMMAND DIR ARGS...`; its stdout, or a throw. */
function cluster(command, ...args) {
  const r = spawnSync('bash', [SCRIPT, command, dir, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, VOLLEY_BIN, API_KEY, ADMIN_KEY, NODES: '3' },
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`cluster.sh ${command}: ${r.status ?? r.signal}: ${(r.stderr || '').trim().slice(-500)}`);
  return r.stdout;
}

function stopCluster() {
  if (!dir || !fs.existsSync(path.join(dir, 'cluster.env'))) return;
  spawnSync('bash', [SCRIPT, 'stop', dir], { encoding: 'utf8', timeout: 60_000 });
}

/** Runs a check whose body may throw or time out; a throw is a failure, not a crash. */
const step = stepper(tally, STEP_MS);

async function cleanup() {
  if (cleaningUp) return cleaningUp;
  cleaningUp = (async () => {
    const b = browser;
    browser = null;
    await closeChromium(b);
    stopCluster();
  })();
  return cleaningUp;
}

installGuards({ timeoutMs: OVERALL_TIMEOUT_MS, tally, cleanup, onExit: stopCluster });

/** Points the page's WebSockets at `target` until one of them closes. */
function steer(target) {
  const Native = window.WebSocket;
  let steering = true;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(steering ? target : url, protocols);
      this.addEventListener('close', () => {
        steering = false;
      });
    }
  };
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-e2e-cluster-'));
  cluster('start');
  const env = Object.fromEntries(
    fs
      .readFileSync(path.join(dir, 'cluster.env'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const nodeWs = (i) => `ws://127.0.0.1:${env[`NODE${i}_PORT`]}/connection/websocket`;
  const base = env.CLUSTER_URL;
  // The API of node 0, which stays up.
  const nodeBase = (i) => `http://127.0.0.1:${env[`NODE${i}_PORT`]}`;
  const publish = (text) => api(nodeBase(0), API_KEY, 'publish', { channel: 'chat:lobby', data: { name: 'api', text } });
  log(`cluster: HAProxy ${base}, nodes ${[0, 1, 2].map((i) => env[`NODE${i}_PORT`]).join(', ')}; ${env.CLUSTER_ENGINE} engine`);

  browser = await launchChromium();
  // Console errors are expected (the killed node's sockets fail); uncaught ones are not.
  const options = (node) => ({ errors: pageErrors, stepMs: STEP_MS, consoleErrors: false, initScript: { fn: steer, arg: nodeWs(node) } });
  const pageA = await openPage(browser, 'A', `${base}/?name=Ada`, options(0));
  const pageB = await openPage(browser, 'B', `${base}/?name=Grace`, options(1));
  let idA = null;
  let idB = null;
  await step('page A on node 0 and page B on node 1 join the chat', async () => {
    idA = await waitConnected(pageA);
    idB = await waitConnected(pageB);
    return `A ${idA}, B ${idB}`;
  });

  await step('each page sees the other, on the other node, in the presence list', () =>
    seeEachOther([pageA, idA, 'Ada'], [pageB, idB, 'Grace']),
  );

  await step('A and B chat across nodes', async () => {
    await say(pageA, 'hello from node 0', pageB);
    await say(pageB, 'hello from node 1', pageA);
  });
  log(`screenshot: ${await shot(pageB, SHOTS, 'cluster-01-page-b-on-node-1')}`);

  const away = ['while B is away 1', 'while B is away 2', 'while B is away 3'];
  const apiAway = ['from the API while B is away 1', 'from the API while B is away 2'];
  await step("node 1 (page B's) is killed with SIGKILL; A and the API write meanwhile", async () => {
    const before = Number((await pageB.locator('body').getAttribute('data-chat-subscriptions')) ?? '0');
    cluster('kill-node', '1');
    for (const text of away) {
      await pageA.fill('#chat-input', text);
      await pageA.press('#chat-input', 'Enter');
      await waitForText(pageA, text);
    }
    for (const text of apiAway) await publish(text);
    await pageB.waitForFunction((n) => Number(document.body.dataset.chatSubscriptions || 0) > n, before, { timeout: 30_000 });
    return `B resubscribed`;
  }, 30_000);

  let idB2 = null;
  await step('page B resumed on another node through HAProxy and recovered', async () => {
    idB2 = await waitConnected(pageB);
    if (idB2 === idB) throw new Error('page B still has its old client id');
    const how = await pageB.locator('body').getAttribute('data-chat');
    if (how !== 'recovered') throw new Error(`the resubscription reports ${JSON.stringify(how)}, not "recovered"`);
    return `new client ${idB2}`;
  });

  await step('page B shows every message once, in the same order as page A', async () => {
    for (const text of [...away, ...apiAway]) await waitForText(pageB, text);
    return sameChat(pageA, pageB, [...away, ...apiAway]);
  });

  await step("presence is whole again: A sees B's new connection", async () => {
    await pageA.locator(`#presence li[data-client="${idB2}"]`).waitFor();
    await pageB.locator(`#presence li[data-client="${idA}"]`).waitFor();
  });
  // A killed node sends no `leave`: its clients' presence entries expire
  // (redis.presence_ttl_ms, 30 s) and the cluster's presence drops them.
  await step("B's connection on the dead node leaves the channel's presence when it expires", async () => {
    const started = Date.now();
    for (;;) {
      const { clients } = await api(nodeBase(0), API_KEY, 'presence', { channel: 'chat:lobby' });
      const ids = clients.map((c) => c.client);
      if (!ids.includes(idB)) {
        if (!ids.includes(idA) || !ids.includes(idB2)) throw new Error(`presence lost a live client: ${ids.join(', ')}`);
        return `gone after ${((Date.now() - started) / 1000).toFixed(1)} s`;
      }
      // Polling another process's state; bounded by the step's time limit.
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }, 45_000);
  log(`screenshot: ${await shot(pageB, SHOTS, 'cluster-02-page-b-resumed')}`);

  check('no uncaught errors in the pages', pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));
}

await runScenario(main, {
  tally,
  cleanup,
  onFailure: () => {
    if (!dir) return;
    for (const name of ['node0.log', 'node1.log', 'node2.log', 'haproxy.log']) {
      const file = path.join(dir, name);
      if (fs.existsSync(file)) log(`${name} (last 1500 chars):\n${fs.readFileSync(file, 'utf8').slice(-1500)}`);
    }
  },
  onEnd: () => dir && fs.rmSync(dir, { recursive: true, force: true }),
});
