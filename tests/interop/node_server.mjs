// Echo server built on the npm `ws` package: the third-party peer that
// Volley's client is tested against (tests/interop/run.sh).
//
//   node node_server.mjs [PORT] [--deflate]
//
// Listens on 127.0.0.1:PORT (default 0 = any free port) and prints
// `LISTENING <port>` on stdout once it accepts connections. Every message is
// echoed back with the same type (text stays text, binary stays binary).
// `ws` answers pings with pongs and echoes the peer's close code/reason by
// itself. --deflate enables permessage-deflate (off by default).
//
// Exits on SIGTERM/SIGINT, and when stdin is closed (a pipe or a terminal),
// so that it cannot outlive the script that started it. A stdin that is
// /dev/null or a file is not watched.
import fs from 'node:fs';
import process from 'node:process';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
let port = 0;
let deflate = false;
for (const arg of args) {
  if (arg === '--deflate') {
    deflate = true;
  } else if (/^\d+$/.test(arg)) {
    port = Number(arg);
  } else if (arg.startsWith('--port=')) {
    port = Number(arg.slice('--port='.length));
  } else {
    console.error(`usage: node node_server.mjs [PORT] [--deflate] (unknown argument ${arg})`);
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: deflate,
  clientTracking: true,
});

wss.on('connection', (ws, req) => {
  const ext = req.headers['sec-websocket-extensions'] || '';
  console.error(`connection from ${req.socket.remotePort}: offered extensions "${ext}", negotiated "${ws.extensions}"`);
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    console.error(`closed: code=${code} reason="${reason.toString()}"`);
  });
  ws.on('error', (err) => {
    console.error(`connection error: ${err.message}`);
  });
});

wss.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});

wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});

let stopping = false;
function shutdown(why) {
  if (stopping) return;
  stopping = true;
  console.error(`shutting down (${why})`);
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

let stdinWatched = false;
try {
  const st = fs.fstatSync(0);
  stdinWatched = st.isFIFO() || st.isSocket() || process.stdin.isTTY === true;
} catch {
  stdinWatched = false;
}
if (stdinWatched) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
