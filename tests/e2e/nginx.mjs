// nginx (Debian's package) in front of the hub, configured the way proxies
// that break WebSockets are: started on a free port of 127.0.0.1 with its own
// configuration and temporary folder, in the foreground (so its PID is our
// child's), stopped by that PID.
//
//   mode "no-upgrade": HTTP/1.1 to the hub with `Connection: ""` and no
//     Upgrade header passed (nginx drops hop-by-hop headers unless told to
//     pass them), like a proxy that blocks WebSocket. Responses are buffered
//     (nginx's default) except where the hub says `X-Accel-Buffering: no`,
//     as it does on its SSE streams.
//   mode "buffered": the same, and it ignores X-Accel-Buffering and
//     compresses responses (gzip, event streams included): the compressor
//     holds an event stream back, its headers too, until the stream ends,
//     like a proxy that buffers or rewrites whole responses. (Buffering
//     alone does not: nginx forwards what it has read whenever the upstream
//     pauses, so small events still pass.) Plain responses, such as
//     long-polls, pass whole.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { withTimeout } from '../browser/harness.mjs';

export const NGINX_BIN = process.env.NGINX_BIN || '/usr/sbin/nginx';

/** A free TCP port of 127.0.0.1 (bound, read and released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The nginx.conf of `mode` for a proxy on `port` in front of `upstream` (host:port), with files under `dir`. */
export function nginxConfig({ dir, port, upstream, mode }) {
  if (mode !== 'no-upgrade' && mode !== 'buffered') throw new Error(`unknown nginx mode ${mode}`);
  const buffered = mode === 'buffered'
    ? '\n      proxy_ignore_headers X-Accel-Buffering;\n      gzip on;\n      gzip_types text/event-stream application/json;\n      gzip_min_length 1;'
    : '';
  return `# volley tests/e2e: nginx in front of the hub, mode ${mode}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  log_format volley '$request_method $uri $status';
  access_log ${dir}/access.log volley;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://${upstream};
      # No Upgrade header is passed on and Connection is emptied: a WebSocket
      # handshake reaches the hub as a plain GET.
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;${buffered}
      proxy_read_timeout 120s;
    }
  }
}
`;
}

/** A running nginx. */
export class Nginx {
  constructor(proc, dir, port) {
    this.proc = proc;
    this.dir = dir;
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The error log (for failure reports). */
  errorLog() {
    try {
      return fs.readFileSync(path.join(this.dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** How many requests `METHOD URI` it has answered (its access log, written per request). */
  requests(method, uri) {
    let text = '';
    try {
      text = fs.readFileSync(path.join(this.dir, 'access.log'), 'utf8');
    } catch {
      return 0;
    }
    return text.split('\n').filter((line) => line.startsWith(`${method} ${uri} `)).length;
  }

  /** SIGQUIT (graceful) to its PID, SIGKILL after `ms`; removes its folder. */
  async stop(ms = 5_000) {
    if (this.running) {
      this.proc.kill('SIGQUIT');
      try {
        await withTimeout(this.exit, ms, 'nginx exit after SIGQUIT');
      } catch {
        this.proc.kill('SIGKILL');
        await this.exit;
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
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
 * Starts nginx in `mode` in front of `upstream` (host:port) and resolves once
 * it answers on its port (GET /health/live through it).
 */
export async function startNginx({ upstream, mode, log = () => {} }) {
  if (!fs.existsSync(NGINX_BIN)) throw new Error(`nginx not found at ${NGINX_BIN}: apt-get install nginx (or set NGINX_BIN)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `volley-e2e-nginx-${mode}-`));
  // Run as root, nginx's workers run as nobody: they must reach their temp folders.
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConfig({ dir, port, upstream, mode }));
  log(`starting: ${NGINX_BIN} -p ${dir} -c ${conf} (${mode}, port ${port} -> ${upstream})`);
  const proc = spawn(NGINX_BIN, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => (stderr += chunk));
  const nginx = new Nginx(proc, dir, port);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (!nginx.running) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx exited at start: ${stderr.trim()}`);
    }
    try {
      const response = await fetch(`${nginx.base}/health/live`);
      if (response.ok) return nginx;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await nginx.stop();
      throw new Error(`nginx did not answer on port ${port} within 10 s: ${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // bounded wait for the port to open
  }
}
