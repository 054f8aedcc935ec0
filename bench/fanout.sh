#!/usr/bin/env bash
# Fan-out benchmark of `volley serve` (issue 5): SUBSCRIBERS subscribers on one
# channel, events published through the HTTP API at rising RATES, the hub
# pinned to CPU 0 and the load generator (`volley bench fanout`, one
# current-thread runtime) to CPU 1.
#
#   bench/fanout.sh                       (defaults below)
#   RATES=10,100 SECONDS_PER_RATE=5 bench/fanout.sh
#   PERF=1 bench/fanout.sh                (also records the hub with perf)
#   FLOOR=0 bench/fanout.sh               (skip the kernel-floor measurement at the end)
#   ENGINE=raw bench/fanout.sh            (the raw subscriber engine: sockets read directly,
#                                          frames parsed in place; same checks)
#   ENGINE=epoll bench/fanout.sh          (connects as raw, then one thread reads every socket
#                                          through epoll: the cheapest per read; same checks)
#   PIN=0 HUB_THREADS=2 bench/fanout.sh   (nothing pinned: the hub on 2 connection threads
#                                          and the load generator share every CPU)
#   WARMUP=0 bench/fanout.sh              (measure from the first event; by default 20 events at
#                                          the first rate go first, unmeasured: TCP's quick-ACK
#                                          start, see bench/tcp_fanout_floor.c)
#   EVENTS=FILE bench/fanout.sh           (also each event's timings, a line per event:
#                                          `volley bench fanout --events`)
#
# Reports, per rate: deliveries per second, publish-to-last-delivery latency
# (HTTP publish call start -> the last subscriber has it; p50, p99, max), the
# load generator's and the hub's CPU; once: the hub's RSS growth per idle
# subscriber (from /proc, before and after subscribing). Every delivery is
# checked: each subscriber gets each event exactly once, in offset order.
#
# Writes JSON lines to target/bench/fanout.jsonl and prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS="${SUBSCRIBERS:-10000}"
RATES="${RATES:-10,50,100,200,500,1000}"
SECONDS_PER_RATE="${SECONDS_PER_RATE:-3}"
PUBLISHERS="${PUBLISHERS:-4}"
ENGINE="${ENGINE:-client}"         # the load generator's subscriber engine: client, raw or epoll
HUB_THREADS="${HUB_THREADS:-1}"   # connection threads of the hub (`volley serve --threads`)
PIN="${PIN:-1}"                   # 1: hub on CPU 0, load generator on CPU 1; 0: not pinned
if [ "$PIN" = 1 ]; then HUB_CPU=(taskset -c 0); GEN_CPU=(taskset -c 1); else HUB_CPU=(); GEN_CPU=(); fi
BIN="${VOLLEY_BIN:-target/release/volley}"   # the load generator (and the hub unless HUB_BIN)
HUB_BIN="${HUB_BIN:-$BIN}"
OUT="${OUT:-target/bench/fanout.jsonl}"
LOG=target/bench/fanout-serve.log
mkdir -p target/bench
: >"$OUT"
[ -x "$BIN" ] || cargo build --release -p volley-cli

# 10,000 connections on each side, plus the hub's own descriptors.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((SUBSCRIBERS + 200)) ]; then
    echo "fanout.sh: open-files limit $(ulimit -n) is below SUBSCRIBERS + 200" >&2
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/volley-fanout.XXXXXX")"
SERVER_PID=""
PERF_PID=""
cleanup() {
    [ -z "$PERF_PID" ] || kill -INT "$PERF_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

API_KEY="fanout-$RANDOM$RANDOM"
cat >"$WORK/volley.toml" <<TOML
api_key = "$API_KEY"
allow_anonymous = true

[limits]
max_connections = 100000
max_connections_per_ip = 100000
commands_per_second = 100000

[namespaces.fanout]
history_size = 100
history_ttl = 60
allow_anonymous = true
TOML

: >"$LOG"
"${HUB_CPU[@]}" "$HUB_BIN" serve --listen 127.0.0.1:0 --config "$WORK/volley.toml" --threads "$HUB_THREADS" \
    >"$WORK/serve.out" 2>"$LOG" </dev/null &
SERVER_PID=$!
ADDR=""
for _ in $(seq 300); do
    if [ "$(wc -l <"$WORK/serve.out")" -ge 1 ]; then
        ADDR="$(head -n 1 "$WORK/serve.out" | sed -n 's#^volley serve listening on http://\([0-9.]*:[0-9]*\)/$#\1#p')"
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    echo "fanout.sh: volley serve did not print 'volley serve listening on http://ADDR/'" >&2
    cat "$WORK/serve.out" >&2
    tail -n 20 "$LOG" >&2
    exit 1
fi
echo "fanout.sh: hub pid $SERVER_PID on $ADDR ($([ "$PIN" = 1 ] && echo "CPU 0" || echo "not pinned"), $HUB_THREADS threads), $(nproc) CPUs" >&2

if [ "${PERF:-0}" = 1 ]; then
    perf record -F 999 -g -p "$SERVER_PID" -o target/bench/fanout.perf.data >/dev/null 2>&1 &
    PERF_PID=$!
fi

CMD=("${GEN_CPU[@]}" "$BIN" bench fanout --addr "$ADDR" --api-key "$API_KEY" -n "$SUBSCRIBERS"
    --rates "$RATES" -d "$SECONDS_PER_RATE" --publishers "$PUBLISHERS" --server-pid "$SERVER_PID"
    --engine "$ENGINE" --warmup "${WARMUP:-20}" --json "$OUT" --label volley
    ${EVENTS:+--events "$EVENTS"})
echo "fanout.sh: ${CMD[*]}" >&2
rc=0
timeout --kill-after=10 600 "${CMD[@]}" >/dev/null || rc=$?

if [ -n "$PERF_PID" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    perf report -i target/bench/fanout.perf.data --no-children --percent-limit 1.5 --stdio 2>/dev/null \
        | grep -v '^$' | head -60 >target/bench/fanout.perf.txt || true
    echo "fanout.sh: hub profile in target/bench/fanout.perf.txt" >&2
fi

python3 - "$OUT" "$SUBSCRIBERS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
mem = [r for r in rows if r["mode"] == "fanout-memory"]
if mem and mem[0].get("bytes_per_idle_subscriber") is not None:
    m = mem[0]
    print(f"idle memory: hub RSS {m['server_rss_before']/2**20:.1f} MiB -> {m['server_rss_after']/2**20:.1f} MiB "
          f"with {m['subscribers']:,} subscribers = {m['bytes_per_idle_subscriber']/1024:.2f} KiB per idle subscriber")
print()
print("| events/s (achieved) | deliveries/s | publish-to-last-delivery p50 | p99 | max | hub-side delivery p50 / p99 (bucket bound) | HTTP publish p50 | loadgen CPU (ms per event) | hub CPU | CPU 0 / CPU 1 busy | complete |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def pct(v):
    return "?" if v is None else f"{v:.0f} %"
def ms(v):
    return "> 1638 ms" if v is None else f"{v:g} ms"
for r in rows:
    if r["mode"] != "fanout":
        continue
    busy = " / ".join(f"{b:.0f} %" for b in r.get("cpu_busy_percent", [])[:2])
    per_event = r.get("loadgen_cpu_ms_per_event")
    print(f"| {r['rate']:g} ({r['achieved_rate']:.1f}) | {r['deliveries_per_sec']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
          f"{(r['max_ms'] or float('nan')):.1f} ms | {ms(r.get('hub_delivery_latency_p50_le_ms'))} / {ms(r.get('hub_delivery_latency_p99_le_ms'))} | "
          f"{r['http_publish_p50_ms']:.2f} ms | {pct(r['loadgen_cpu_percent'])} ({'?' if per_event is None else f'{per_event:.1f}'}) | "
          f"{pct(r['hub_cpu_percent'])} | {busy} | {'yes' if r['complete'] else 'NO'} |")
PY
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

# The kernel's floor: the same number of loopback TCP sends from one core, no hub.
if [ "${FLOOR:-1}" = 1 ] && command -v cc >/dev/null 2>&1; then
    cc -O2 -pthread -o target/bench/tcp_fanout_floor bench/tcp_fanout_floor.c
    n=$(( $(ulimit -n) / 2 - 100 ))
    [ "$n" -le "$SUBSCRIBERS" ] || n="$SUBSCRIBERS"
    echo
    echo "kernel floor (bench/tcp_fanout_floor.c): $(target/bench/tcp_fanout_floor "$n")"
fi
exit "$rc"
