#!/usr/bin/env bash
# Echo throughput and idle memory of `volley echo` with and without
# permessage-deflate. The server is pinned to CPU 0 and the load generator to
# CPU 1; the two settings alternate (off, on, off, on, ...) for ROUNDS rounds
# and the median is reported.
#
#   bench/compression.sh            (ROUNDS=3 DURATION=5 by default)
#
# Writes JSON lines to target/bench/compression.jsonl and prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
IDLE="${IDLE:-10000}"
BIN="${VOLLEY_BIN:-target/release/volley}"
OUT=target/bench/compression.jsonl
mkdir -p target/bench
: >"$OUT"
[ -x "$BIN" ] || cargo build --release -p volley-cli

SERVER_PID=""
cleanup() { [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

start_server() { # FLAGS...
    : >target/bench/server.log
    taskset -c 0 "$BIN" echo --port 0 "$@" >target/bench/server.log 2>&1 &
    SERVER_PID=$!
    URL=""
    for _ in $(seq 200); do
        URL=$(grep -o 'ws://[0-9.:]*/' target/bench/server.log 2>/dev/null || true)
        [ -z "$URL" ] || break
        sleep 0.05
    done
    [ -n "$URL" ] || { echo "volley echo did not start" >&2; exit 1; }
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

for round in $(seq "$ROUNDS"); do
    for mode in off on; do
        flags=(); bflags=()
        if [ "$mode" = on ]; then bflags=(--compression); else flags=(--no-compression); fi
        start_server "${flags[@]}"
        for scenario in "100 16 200" "10 16 16384"; do
            read -r c k s <<<"$scenario"
            # The volley client on both sides of the comparison (the raw
            # engine does not compress).
            taskset -c 1 "$BIN" bench echo --engine client --url "$URL" -c "$c" -k "$k" -s "$s" --text -d "$DURATION" \
                --label "deflate-$mode" --json "$OUT" "${bflags[@]}" >/dev/null
        done
        stop_server
        start_server "${flags[@]}"
        taskset -c 1 "$BIN" bench connect --engine client --url "$URL" -n "$IDLE" --server-pid "$SERVER_PID" \
            --label "deflate-$mode" --json "$OUT" "${bflags[@]}" >/dev/null
        stop_server
        echo "round $round, compression $mode: done" >&2
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def table(key, fmt, scen):
    out = {}
    for r in rows:
        if scen(r): out.setdefault(r["label"], []).append(r[key])
    return {k: (statistics.median(v), min(v), max(v)) for k, v in out.items()}
print("| scenario | compression off | compression on | on/off |")
print("|---|---|---|---|")
for c, s in [(100, 200), (10, 16384)]:
    t = table("messages_per_sec", "", lambda r, c=c, s=s: r["mode"] == "echo" and r["connections"] == c and r["size"] == s)
    off, on = t.get("deflate-off"), t.get("deflate-on")
    if off and on:
        print(f"| echo {c} x {s} B text, K=16 (msg/s) | {off[0]:,.0f} ({off[1]:,.0f}–{off[2]:,.0f}) | {on[0]:,.0f} ({on[1]:,.0f}–{on[2]:,.0f}) | {on[0]/off[0]:.2f} |")
t = table("bytes_per_connection", "", lambda r: r["mode"] == "connect")
off, on = t.get("deflate-off"), t.get("deflate-on")
if off and on:
    print(f"| idle memory per connection, N={rows[-1]['connections']} (KiB) | {off[0]/1024:.2f} ({off[1]/1024:.2f}–{off[2]/1024:.2f}) | {on[0]/1024:.2f} ({on[1]/1024:.2f}–{on[2]/1024:.2f}) | {on[0]/off[0]:.2f} |")
PY
