#!/usr/bin/env bash
# `volley echo` against bench/servers' current-thread Volley echo server, side
# by side: round-trip latency of 32-byte messages on one connection (`volley
# bench latency`), servers pinned to CPU 0 and the generator to CPU 1, the two
# servers taking turns for ROUNDS rounds (default 3). One JSON line per run in
# OUT (default target/bench/echo-latency.jsonl).
#
#   bench/echo_latency.sh
#   ECHO_ENV=_RJEM_MALLOC_CONF=background_thread:false bench/echo_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-target/bench/echo-latency.jsonl}"
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
cargo build --release --quiet -p volley-cli
(cd bench/servers && CARGO_TARGET_DIR=target cargo build --release --quiet --bin volley)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq "$ROUNDS"); do
    for server in volley-echo current-thread; do
        port=$(free_port)
        case $server in
            volley-echo) taskset -c 0 env ${ECHO_ENV:-VOLLEY_LOG=warn} target/release/volley echo --listen "127.0.0.1:$port" >/dev/null 2>&1 & ;;
            current-thread) taskset -c 0 bench/servers/target/release/volley "$port" >/dev/null 2>&1 & ;;
        esac
        pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        taskset -c 1 target/release/volley bench latency --url "ws://127.0.0.1:$port/" \
            --label "$server" --json "$OUT" -s 32 -d 3 --warmup 1 | { grep -v '^{' || true; }
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    done
done
