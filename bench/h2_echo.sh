#!/usr/bin/env bash
# Echo over HTTP/2 against HTTP/1.1 (issue 16): one server, the library's
# `h1_and_h2` example (HTTP/1.1 upgrades and RFC 8441 extended CONNECT on one
# port, h2c), pinned to CPU 0; the load generator `volley bench` on the client
# engine, pinned to CPU 1: C WebSockets, each its own TCP connection
# (HTTP/1.1), or all of them streams of one HTTP/2 connection (--http2).
#
#   bench/h2_echo.sh                          (defaults below)
#   CONNS=100 K=16 SIZE=20 DURATION=5 ROUNDS=3 IDLE=2000 bench/h2_echo.sh
#
# Reports per round and protocol: messages per second, the server's CPU per
# message (over the whole run, warm-up included: an upper bound), and (once
# per protocol) the server's RSS per idle WebSocket over IDLE WebSockets
# (over HTTP/2, 100 per HTTP/2 connection: hyper's server allows 200
# concurrent streams by default). Every echoed byte is checked by
# `volley bench`. JSON lines go to target/bench/h2_echo.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${CONNS:-100}"
K="${K:-16}"
SIZE="${SIZE:-20}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
IDLE="${IDLE:-2000}"
BIN="${VOLLEY_BIN:-target/release/volley}"
SERVER=target/release/examples/h1_and_h2
OUT=target/bench/h2_echo.jsonl
mkdir -p target/bench
: >"$OUT"
[ -x "$BIN" ] || cargo build --release -p volley-cli
[ -x "$SERVER" ] || cargo build --release -p volley --features http2 --example h1_and_h2

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PIN_SERVER=(); PIN_LOAD=()
if [ "$(nproc)" -ge 2 ]; then PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c 1); fi
SERVER_PID=""
start_server() {
    "${PIN_SERVER[@]}" "$SERVER" "127.0.0.1:$PORT" >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "h2_echo.sh: the server did not listen on $PORT" >&2
    exit 1
}
stop_server() {
    [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    SERVER_PID=""
}
trap stop_server EXIT

URL="ws://127.0.0.1:$PORT/ws"
for round in $(seq "$ROUNDS"); do
    for proto in h1 h2; do
        flag=(); [ "$proto" = h2 ] && flag=(--http2)
        start_server
        "${PIN_LOAD[@]}" "$BIN" bench echo --engine client "${flag[@]}" --url "$URL" -c "$CONNS" -k "$K" -s "$SIZE" \
            -d "$DURATION" --server-pid "$SERVER_PID" --json "$OUT" --label "$proto-round$round" 2>&1 | grep -v '^\s*$' || true
        stop_server
    done
done
for proto in h1 h2; do
    flag=(); [ "$proto" = h2 ] && flag=(--http2)
    start_server
    "${PIN_LOAD[@]}" "$BIN" bench connect --engine client "${flag[@]}" --url "$URL" -n "$IDLE" \
        --server-pid "$SERVER_PID" --json "$OUT" --label "$proto-idle" 2>&1 | grep -v '^\s*$' || true
    stop_server
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| protocol | round | msg/s | server CPU per message |")
print("|---|---|---|---|")
for r in rows:
    if r["mode"] == "echo":
        proto, rnd = r["label"].split("-round")
        print(f"| {proto} | {rnd} | {r['messages_per_sec']:,.0f} | {r.get('server_us_per_message') or float('nan'):.2f} us |")
print()
print("| protocol | idle WebSockets | server RSS per WebSocket |")
print("|---|---|---|")
for r in rows:
    if r["mode"] == "connect":
        per = r.get("bytes_per_connection")
        print(f"| {r['label'].split('-')[0]} | {r['connections']:,} | {per / 1024:.2f} KiB |" if per else f"| {r['label']} | ? | ? |")
PY
