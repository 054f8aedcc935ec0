// The SDK in Node 20 against the real hub: the committed build the hub serves
// (crates/volley-hub/assets/volley.js) driven with the `ws` package as its
// WebSocket. Complements demo.mjs (the browser) with what the pages do not
// show: the "stop" rule of a non-reconnecting disconnect (4501), and the
// drain of §14.2 (the 4001 push on SIGTERM: the client leaves by itself after
// reconnect_after_ms, before the server's grace period ends). And the two
// fallback transports (SSE, long-polling; docs/protocol.md "Transports") on
// their own against the real hub: the session, batched commands in order,
// and recovery after a disconnect.
//
// One line per check, then `N passed, M failed`; exit status 1 on any failure.
// Env: VOLLEY_BIN, E2E_TIMEOUT (seconds, default 60).

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import WebSocket from 'ws';

import { Tally, installGuards, log, withTimeout } from '../browser/harness.mjs';
import { REPO, metricValue, startHub } from './hub.mjs';

const { Client } = await import(pathToFileURL(path.join(REPO, 'crates', 'volley-hub', 'assets', 'volley.js')).href);

const OVERALL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT || 60) * 1000;
const STEP_MS = 10_000;
const API_KEY = `e2e-api-${randomBytes(8).toString('hex')}`;

const tally = new Tally();
const check = tally.check.bind(tally);
const hubs = [];
const clients = [];

async function step(name, fn) {
  try {
    const detail = await withTimeout(Promise.resolve().then(fn), STEP_MS, name);
    check(name, true, typeof detail === 'string' ? detail : '');
  } catch (e) {
    check(name, false, e.message.split('\n')[0]);
  }
}

/** Resolves with the first event `name` of `emitter` for which `test` holds. */
function next(emitter, name, test = () => true) {
  return new Promise((resolve) => {
    const off = emitter.on(name, (event) => {
      if (!test(event)) return;
      off();
      resolve(event);
    });
  });
}

/** Resolves once every offset of `offsets` is in `seen` (checked every 20 ms, for 5 s at most). */
function untilSeen(seen, offsets) {
  return withTimeout(
    (async () => {
      while (!offsets.every((o) => seen.includes(o))) await new Promise((res) => setTimeout(res, 20));
    })(),
    5000,
    `offsets ${offsets.join(',')}`,
  );
}

/**
 * Disconnects a client through the HTTP API (`target`: `{user}` or `{client}`,
 * reconnect: true), publishes `count` messages to chat:lobby while it is away
 * (texts `${label}0`...), and checks that it came back by itself after a 4000
 * with every one of them recovered, none twice (`seen`: the offsets its
 * subscription `chat` delivered; `events`: its recorder). The offsets.
 */
async function awayAndBack(hub, { chat, seen, events }, target, count, label) {
  const recovered = next(chat, 'subscribed', (s) => s.wasRecovering);
  const r = await hub.api('disconnect', { ...target, reconnect: true });
  if (r.disconnected !== 1) throw new Error(`disconnected ${JSON.stringify(r)}`);
  const offsets = [];
  for (let i = 0; i < count; i++) {
    offsets.push((await hub.api('publish', { channel: 'chat:lobby', data: { name: 'api', text: `${label}${i}` } })).offset);
  }
  const s = await recovered;
  if (!s.recovered) throw new Error('recovered: false');
  await untilSeen(seen, offsets);
  if (new Set(seen).size !== seen.length) throw new Error(`duplicates: ${seen.join(',')}`);
  const d = events.find((e) => e.name === 'disconnected');
  if (d?.code !== 4000 || !d.reconnect) throw new Error(`disconnected event ${JSON.stringify(d)}`);
  return offsets;
}

/** Records every event of a client as short strings. */
function recorder(client) {
  const events = [];
  for (const name of ['connecting', 'connected', 'disconnected']) {
    client.on(name, (e) => events.push({ name, at: Date.now(), ...e }));
  }
  return events;
}

function newClient(hub, name, options = {}) {
  const getToken = async () => {
    const response = await fetch(`${hub.base}/demo/token?name=${encodeURIComponent(name)}`);
    return (await response.json()).token;
  };
  const client = new Client(`ws://${hub.addr}/connection/websocket`, { WebSocket, getToken, ...options });
  clients.push(client);
  return client;
}

async function cleanup() {
  for (const c of clients) c.disconnect();
  for (const h of hubs) await h.stop();
}

installGuards({
  timeoutMs: OVERALL_TIMEOUT_MS,
  tally,
  cleanup,
  onExit: () => hubs.forEach((h) => h.killNow()),
});

async function demoHub() {
  const hub = await startHub({ apiKey: API_KEY, log });
  hubs.push(hub);

  const client = newClient(hub, 'node');
  const events = recorder(client);
  const chat = client.newSubscription('chat:lobby', { presence: true });
  const seen = [];
  chat.on('publication', (p) => seen.push(p.offset));

  await step('Node 20 + ws: connects with a demo token and subscribes with presence', async () => {
    const subscribed = next(chat, 'subscribed');
    chat.subscribe();
    client.connect();
    const s = await subscribed;
    const me = s.presence?.find((i) => i.client === client.client);
    if (me?.conn_info?.name !== 'node') throw new Error(`presence ${JSON.stringify(s.presence)}`);
    return `user ${client.user}, epoch ${s.epoch}, offset ${s.offset}`;
  });

  await step('publish resolves with the offset; the own copy arrives once', async () => {
    const own = next(chat, 'publication', (p) => p.data?.text === 'from node');
    const r = await chat.publish({ name: 'node', text: 'from node' });
    const p = await own;
    if (p.offset !== r.offset) throw new Error(`reply offset ${r.offset}, push offset ${p.offset}`);
    return `offset ${r.offset}`;
  });

  await step('server errors reject with their code (111 publish unsubscribed, 102 unknown namespace)', async () => {
    const codes = [];
    for (const call of [() => client.publish('ticker:demo', 1), () => client.history('nope:x')]) {
      try {
        await call();
        codes.push('ok');
      } catch (e) {
        codes.push(`${e.kind}:${e.code}`);
      }
    }
    if (codes.join() !== 'server:111,server:102') throw new Error(codes.join());
  });

  await step('API disconnect (reconnect: true) by user: 4000, back by itself, the missed ones recovered', async () => {
    await awayAndBack(hub, { chat, seen, events }, { user: client.user }, 3, 'm');
    return `offsets seen ${seen.join(',')}`;
  });

  await step('API unsubscribe: 2500 reported, the subscription stays unsubscribed', async () => {
    const gone = next(chat, 'unsubscribed');
    const r = await hub.api('unsubscribe', { user: client.user, channel: 'chat:lobby' });
    if (r.unsubscribed !== 1) throw new Error(`unsubscribed ${JSON.stringify(r)}`);
    const e = await gone;
    if (e.code !== 2500) throw new Error(`code ${e.code}`);
    if (chat.state !== 'unsubscribed') throw new Error(`state ${chat.state}`);
    return `${e.code} ${e.reason}`;
  });

  await step('API disconnect (reconnect: false): 4501 reported, no reconnect', async () => {
    const stopped = next(client, 'disconnected', (e) => !e.reconnect);
    await hub.api('disconnect', { client: client.client, reconnect: false, reason: 'banned' });
    const e = await stopped;
    if (e.code !== 4501 || e.reason !== 'banned') throw new Error(`code ${e.code}, reason ${e.reason}`);
    const sockets = events.filter((x) => x.name === 'connected').length;
    await new Promise((res) => setTimeout(res, 1500)); // would be a reconnect within the backoff
    if (client.state !== 'disconnected') throw new Error(`state ${client.state}`);
    if (events.filter((x) => x.name === 'connected').length !== sockets) throw new Error('it reconnected');
    return `${e.code} ${e.reason}`;
  });
}

async function drainHub() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-e2e-'));
  const config = path.join(dir, 'drain.toml');
  fs.writeFileSync(config, 'demo = true\nallow_anonymous = true\n[drain]\ngrace_ms = 6000\nspread_ms = 1500\n');
  const hub = await startHub({ apiKey: API_KEY, extraArgs: ['--config', config], log });
  hubs.push(hub);
  const client = newClient(hub, 'drain');
  const ticker = client.newSubscription('ticker:demo');
  ticker.subscribe();

  await step('drain: on SIGTERM the client keeps working, leaves by itself within spread_ms, before the grace ends', async () => {
    const subscribed = next(ticker, 'subscribed');
    client.connect();
    await subscribed;
    const left = next(client, 'disconnected').then((e) => ({ ...e, at: Date.now() }));
    const signalled = Date.now();
    hub.proc.kill('SIGTERM');
    const rtt = await client.ping(); // still answered while draining
    const e = await left;
    const after = e.at - signalled;
    if (e.code !== 4001 || !e.reconnect) throw new Error(`left with ${e.code} ${e.reason}`);
    if (after > 1500 + 500) throw new Error(`left ${after} ms after SIGTERM, spread is 1500 ms`);
    const status = await withTimeout(hub.exit, 8000, 'hub exit');
    client.disconnect();
    if (status.code !== 0) throw new Error(`hub exited with ${JSON.stringify(status)}`);
    return `ping ${rtt.toFixed(1)} ms while draining; left ${after} ms after SIGTERM; hub exit 0`;
  });
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The SDK on one fallback transport alone (no WebSocket tried) against the hub. */
async function fallbackTransport(hub, transport) {
  const client = newClient(hub, transport, { transports: [transport] });
  const events = recorder(client);
  const chat = client.newSubscription('chat:lobby');
  const seen = [];
  chat.on('publication', (p) => seen.push(p.offset));

  await step(`${transport}: connects and subscribes over ${transport}; /metrics count the session`, async () => {
    const subscribed = next(chat, 'subscribed');
    chat.subscribe();
    client.connect();
    await subscribed;
    const connected = events.find((e) => e.name === 'connected');
    if (connected?.transport !== transport || client.transport !== transport) {
      throw new Error(`connected over ${connected?.transport}, property ${client.transport}`);
    }
    const open = metricValue(await hub.metrics(), 'volley_connections_by_transport', { transport });
    if (!(open >= 1)) throw new Error(`volley_connections_by_transport{transport="${transport}"} = ${open}`);
    return `client ${client.client}; ${transport} connections ${open}`;
  });

  await step(`${transport}: 50 publishes issued at once resolve in order, each own copy once`, async () => {
    const texts = Array.from({ length: 50 }, (_, i) => `${transport} burst ${i}`);
    const results = await Promise.all(texts.map((text) => chat.publish({ name: transport, text })));
    const offsets = results.map((r) => r.offset);
    if (offsets.some((o, i) => i > 0 && o !== offsets[i - 1] + 1)) throw new Error(`offsets ${offsets.join(',')}`);
    await untilSeen(seen, offsets);
    if (new Set(seen).size !== seen.length) throw new Error(`duplicates: ${seen.join(',')}`);
    return `offsets ${offsets[0]}..${offsets[offsets.length - 1]}`;
  });

  await step(`${transport}: API disconnect by client; back over ${transport} with every missed publication, none twice`, async () => {
    const before = client.client;
    const offsets = await awayAndBack(hub, { chat, seen, events }, { client: before }, 5, `${transport} away `);
    if (client.client === before || client.transport !== transport) throw new Error(`client ${client.client} over ${client.transport}`);
    return `${offsets.length} of ${offsets.length} recovered (offsets ${offsets.join(',')})`;
  });
  client.disconnect();
}

try {
  await demoHub();
  await drainHub();
  const hub = await startHub({ apiKey: API_KEY, log });
  hubs.push(hub);
  await fallbackTransport(hub, 'sse');
  await fallbackTransport(hub, 'long-poll');
} catch (e) {
  check('scenario ran to the end', false, e.message.split('\n').slice(0, 6).join(' / '));
}
await cleanup();
log(tally.summary());
process.exit(tally.failed > 0 ? 1 : 0);
