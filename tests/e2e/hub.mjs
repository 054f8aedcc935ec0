// Shared by the e2e scenarios: start `volley serve` on a free port (over
// http, or https with a self-signed certificate), read the bound address from
// its first stdout line, call its HTTP API, read its metrics, stop it.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { withTimeout } from '../browser/harness.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VOLLEY_BIN = path.resolve(REPO, process.env.VOLLEY_BIN || 'target/release/volley');

/** POST BASE/api/METHOD with the API key; resolves with `result`, rejects on an error. */
export async function api(base, apiKey, method, body) {
  const response = await fetch(`${base}/api/${method}`, {
    method: 'POST',
    headers: { Authorization: `apikey ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method}: HTTP ${response.status}, not JSON: ${text.slice(0, 200)}`);
  }
  if (!response.ok || json.error) throw new Error(`${method}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json.result;
}

/**
 * Makes a self-signed certificate for localhost and 127.0.0.1 in `dir` with
 * openssl; `{cert, key}` (PEM file paths).
 */
export function selfSignedCert(dir) {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', key, '-out', cert, '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { cert, key };
}

/** The value of the sample `name{labels}` in a Prometheus/OpenMetrics text, or null when absent. */
export function metricValue(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return null;
}

/** A running `volley serve`. */
export class Hub {
  constructor(proc, scheme, addr, apiKey, ca) {
    this.proc = proc;
    this.addr = addr;
    this.base = `${scheme}://${addr}`;
    this.ca = ca;
    this.apiKey = apiKey;
    this.output = '';
    this.exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Whether the process is still running. */
  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** POST /api/METHOD with the API key; resolves with `result`, rejects on an error. */
  api(method, body) {
    return api(this.base, this.apiKey, method, body);
  }

  /** The text of GET /metrics (over https, trusting the hub's own certificate). */
  async metrics() {
    if (this.ca === undefined) return (await fetch(`${this.base}/metrics`)).text();
    return new Promise((resolve, reject) => {
      const request = https.get(`${this.base}/metrics`, { ca: this.ca }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => (response.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics: HTTP ${response.statusCode}`))));
      });
      request.on('error', reject);
    });
  }

  /** SIGTERM, then SIGKILL after `ms`; resolves with the exit status. */
  async stop(ms = 10_000) {
    if (!this.running) return this.exit;
    this.proc.kill('SIGTERM');
    try {
      return await withTimeout(this.exit, ms, 'volley exit after SIGTERM');
    } catch {
      this.proc.kill('SIGKILL');
      return this.exit;
    }
  }

  /** SIGKILL now (for process exit handlers). */
  killNow() {
    if (this.running) {
      try {
        this.proc.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * Starts `volley serve --listen 127.0.0.1:0 --api-key KEY ...extra` (with
 * `tls: {cert, key}` from `selfSignedCert`, over https) and resolves once its
 * first stdout line names the bound address.
 */
export function startHub({ apiKey, extraArgs = [], tls, log = () => {} }) {
  if (!fs.existsSync(VOLLEY_BIN)) {
    throw new Error(`volley binary not found at ${VOLLEY_BIN}: build it with \`cargo build --release -p volley-cli\` or set VOLLEY_BIN`);
  }
  const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const args = ['serve', '--listen', '127.0.0.1:0', '--api-key', apiKey, ...tlsArgs, ...extraArgs];
  log(`starting: ${path.relative(REPO, VOLLEY_BIN) || VOLLEY_BIN} ${args.join(' ')}`);
  const proc = spawn(VOLLEY_BIN, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let output = '';
  let hub = null;
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  const append = (chunk) => {
    output += chunk;
    if (hub) hub.output = output;
  };
  proc.stderr.on('data', append);
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`no first stdout line within 15 s; output:\n${output}`));
    }, 15_000);
    proc.stdout.on('data', (chunk) => {
      append(chunk);
      if (hub) return;
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      const line = buf.slice(0, nl);
      const m = /^volley serve listening on (https?):\/\/(127\.0\.0\.1:\d+)\/$/.exec(line);
      if (!m) {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first stdout line: ${JSON.stringify(line)}`));
        return;
      }
      hub = new Hub(proc, m[1], m[2], apiKey, tls ? fs.readFileSync(tls.cert) : undefined);
      hub.output = output;
      resolve(hub);
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${VOLLEY_BIN}: ${e.message}`));
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!hub) reject(new Error(`volley exited early (code ${code}, signal ${signal}); output:\n${output}`));
    });
  });
}
