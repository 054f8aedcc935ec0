// Fan-out of `volley serve` to N subscribers on one transport, then another
// (issue 16): the same channel, the same publications through the HTTP API,
// the same load generator (this Node process, one thread), the subscribers
// either WebSockets (the `ws` package) or SSE streams (node:http, commands by
// POST /connection/send). Raw clients, not the SDK, so that the generator
// costs the same per delivery on both sides: each message is parsed as JSON
// and its offset checked.
//
//   node bench/transports_fanout.mjs                       (defaults below)
//   SUBSCRIBERS=1000 RATE=50 SECONDS=6 TRANSPORTS=websocket,sse node bench/transports_fanout.mjs
//
// Needs the release binary (VOLLEY_BIN, default target/release/volley) and
// tests/e2e's npm packages (tests/e2e/setup.sh). The hub is pinned to CPU 0
// and this process to CPU 1 (taskset) when the machine has two CPUs or more.
//
// Reports per transport: publications and deliveries per second, publish
// (HTTP API call start) to last delivery p50 / p99 / max, the hub's CPU per
// delivery (utime + stime from /proc), the hub's RSS per idle subscriber
// (before and after subscribing), and whether every subscriber got every
// publication exactly once, in offset order. JSON lines go to
// target/bench/transports_fanout.jsonl.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WebSocket = createRequire(path.join(REPO, 'tests', 'e2e', 'package.json'))('ws');

const SUBSCRIBERS = Number(process.env.SUBSCRIBERS || 1000);
const RATE = Number(process.env.RATE || 50);
const SECONDS = Number(process.env.SECONDS || 6);
const TRANSPORTS = (process.env.TRANSPORTS || 'websocket,sse').split(',');
const BIN = path.resolve(REPO, process.env.VOLLEY_BIN || 'target/release/volley');
const OUT = path.join(REPO, 'target', 'bench', 'transports_fanout.jsonl');
const CHANNEL = 'fanout:bench';
const API_KEY = `fanout-${process.pid}`;
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
const PIN = os.cpus().length >= 2;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime
}

function rssBytes(pid) {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) * 1024;
}

async function startHub(dir) {
  const config = path.join(dir, 'volley.toml');
  fs.writeFileSync(config, `api_key = "${API_KEY}"
allow_anonymous = true

[limits]
max_connections = 100000
max_connections_per_ip = 100000
commands_per_second = 100000

[namespaces.fanout]
history_size = 100
history_ttl = 60
allow_anonymous = true
`);
  const args = ['serve', '--listen', '127.0.0.1:0', '--config', config, '--threads', '1'];
  const proc = PIN ? spawn('taskset', ['-c', '0', BIN, ...args], { stdio: ['ignore', 'pipe', 'ignore'] }) : spawn(BIN, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const addr = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('volley serve printed no address within 15 s')), 15_000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = /listening on http:\/\/([\d.]+:\d+)\//.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => reject(new Error(`volley serve exited (${code})`)));
  });
  proc.stdout.resume();
  return { proc, addr };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One HTTP request; resolves with {status, body}. */
function request(addr, method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const [host, port] = addr.split(':');
    const req = http.request({ host, port, method, path: url, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A subscriber's bookkeeping: offsets in order, each once. */
class Tracker {
  constructor(onPublication) {
    this.last = null;
    this.count = 0;
    this.errors = 0;
    this.onPublication = onPublication;
  }

  message(text) {
    const m = JSON.parse(text);
    if (m.push === 'publication') {
      if (this.last !== null && m.offset !== this.last + 1) this.errors++;
      this.last = m.offset;
      this.count++;
      this.onPublication(m.data.i);
    }
    return m;
  }
}

const CONNECT = JSON.stringify({ id: 1, method: 'connect', params: {} });
const SUBSCRIBE = JSON.stringify({ id: 2, method: 'subscribe', params: { channel: CHANNEL } });

/** A WebSocket subscriber; resolves once subscribed. */
function wsSubscriber(addr, tracker) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${addr}/connection/websocket`, 'volley.v1');
    ws.on('open', () => {
      ws.send(CONNECT);
      ws.send(SUBSCRIBE);
    });
    ws.on('message', (data) => {
      const m = tracker.message(data.toString());
      if (m.id === 2) (m.error ? reject(new Error(JSON.stringify(m.error))) : resolve(() => ws.terminate()));
    });
    ws.on('error', reject);
  });
}

/** An SSE subscriber; resolves once subscribed. */
function sseSubscriber(addr, tracker) {
  return new Promise((resolve, reject) => {
    const [host, port] = addr.split(':');
    const req = http.get({ host, port, path: '/connection/sse', headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`SSE: HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk) => {
        buf += chunk;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const data = event.split('\n').find((l) => l.startsWith('data: '))?.slice(6);
          if (data === undefined) continue;
          if (event.startsWith('event: session')) {
            const session = JSON.parse(data).session;
            request(addr, 'POST', `/connection/send?session=${session}&seq=1`, `${CONNECT}\n${SUBSCRIBE}`, { 'Content-Type': 'text/plain' })
              .then((r) => r.status === 204 || reject(new Error(`send: HTTP ${r.status}`)), reject);
            continue;
          }
          const m = tracker.message(data);
          if (m.id === 2) (m.error ? reject(new Error(JSON.stringify(m.error))) : resolve(() => req.destroy()));
        }
      });
    });
    req.on('error', reject);
  });
}

async function run(transport) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-transports-fanout-'));
  const { proc, addr } = await startHub(dir);
  const received = new Map(); // event i -> deliveries so far
  const lastAt = new Map(); // event i -> time of the last delivery
  const onPublication = (i) => {
    const n = (received.get(i) ?? 0) + 1;
    received.set(i, n);
    if (n === SUBSCRIBERS) lastAt.set(i, performance.now());
  };
  const trackers = Array.from({ length: SUBSCRIBERS }, () => new Tracker(onPublication));
  const rssBefore = rssBytes(proc.pid);
  const closers = [];
  const subscribe = transport === 'sse' ? sseSubscriber : wsSubscriber;
  for (let i = 0; i < SUBSCRIBERS; i += 50) {
    closers.push(...(await Promise.all(trackers.slice(i, i + 50).map((t) => subscribe(addr, t)))));
  }
  await sleep(1000); // let the hub settle before the idle RSS reading
  const rssAfter = rssBytes(proc.pid);

  const events = Math.round(RATE * SECONDS);
  const sentAt = new Map();
  const cpu0 = cpuSeconds(proc.pid);
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  const publishes = [];
  for (let i = 0; i < events; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    sentAt.set(i, performance.now());
    publishes.push(request(addr, 'POST', '/api/publish', JSON.stringify({ channel: CHANNEL, data: { i } }), {
      Authorization: `apikey ${API_KEY}`,
      'Content-Type': 'application/json',
    }));
  }
  await Promise.all(publishes);
  const deadline = performance.now() + 30_000;
  while (lastAt.size < events && performance.now() < deadline) await sleep(20);
  const elapsed = (performance.now() - t0) / 1000;
  const hubCpu = cpuSeconds(proc.pid) - cpu0;
  const gen = process.cpuUsage(gen0);
  const deliveries = trackers.reduce((sum, t) => sum + t.count, 0);
  const complete = trackers.every((t) => t.count === events && t.errors === 0);
  const latencies = [...lastAt].map(([i, at]) => at - sentAt.get(i)).sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  for (const close of closers) close();
  proc.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    transport,
    subscribers: SUBSCRIBERS,
    events,
    seconds: elapsed,
    deliveries_per_s: deliveries / elapsed,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    max_ms: latencies[latencies.length - 1],
    hub_cpu_us_per_delivery: (hubCpu * 1e6) / deliveries,
    hub_cpu_percent: (100 * hubCpu) / elapsed,
    loadgen_cpu_percent: (100 * (gen.user + gen.system)) / 1e6 / elapsed,
    rss_per_subscriber_kib: (rssAfter - rssBefore) / SUBSCRIBERS / 1024,
    complete,
  };
}

if (PIN) spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
fs.mkdirSync(path.dirname(OUT), { recursive: true });
const rows = [];
for (const transport of TRANSPORTS) {
  const row = await run(transport);
  rows.push(row);
  fs.appendFileSync(OUT, `${JSON.stringify(row)}\n`);
}
agent.destroy();
console.log(`\n${SUBSCRIBERS} subscribers, ${RATE} publications/s for ${SECONDS} s, hub on one thread${PIN ? ' (CPU 0; load generator on CPU 1)' : ''}\n`);
console.log('| transport | deliveries/s | publish to last delivery p50 / p99 / max | hub CPU per delivery | hub CPU | load generator CPU | hub RSS per idle subscriber | complete |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.transport} | ${Math.round(r.deliveries_per_s).toLocaleString('en')} | ${r.p50_ms.toFixed(1)} / ${r.p99_ms.toFixed(1)} / ${r.max_ms.toFixed(1)} ms | ${r.hub_cpu_us_per_delivery.toFixed(2)} us | ${r.hub_cpu_percent.toFixed(0)} % | ${r.loadgen_cpu_percent.toFixed(0)} % | ${r.rss_per_subscriber_kib.toFixed(1)} KiB | ${r.complete ? 'yes' : 'NO'} |`,
  );
}
process.exit(rows.every((r) => r.complete) ? 0 : 1);
