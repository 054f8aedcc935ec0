#!/usr/bin/env bash
# Cluster benchmarks (issue 13), each side by side with the memory engine,
# on clusters that scripts/cluster.sh starts on free ports in a temporary
# directory and stops by PID (no persistence: SHARD0_AOF=0; plain shards, no
# replica or Sentinel: SHARD1_SENTINEL=0). Every scenario runs RUNS times,
# its variants alternating, each on a fresh cluster.
#
#   bench/cluster.sh                        (everything, 3 runs)
#   SCENARIOS=latency RUNS=5 bench/cluster.sh
#   SMOKE=1 bench/cluster.sh                (tiny counts, a few seconds each: CI)
#   REPORT_ONLY=1 OUT=DIR bench/cluster.sh  (the summary of an earlier run's JSON lines)
#   HUB_BIN=/tmp/old/volley bench/cluster.sh (nodes of another build, same load generator)
#   THROUGHPUT_HUB_BIN=/tmp/old/volley bench/cluster.sh (adds that build's node
#                                         on one Redis to the throughput variants)
#
# Scenarios:
#   throughput  publications/s through one node's HTTP API (`volley bench
#               publish`: C connections, `broadcast` to B channels per request,
#               round-robin over 1000 channels): the memory engine, one Redis
#               (also with redis.publish_batch = 1: one script call per
#               publication, as before batching), two Redis shards. With
#               THROUGHPUT_HUB_BIN, also one Redis under that build's nodes
#               (an older build, side by side). Every reply's offset is checked (per channel:
#               consecutive, once, one epoch, and the stream's top read back).
#               Pinned: Redis on CPU 0; the node and the load generator on CPU 1.
#   latency     publish-to-delivery at LATENCY_RATE publications/s (`volley
#               bench fanout`, one subscriber): the memory engine on one node,
#               and the Redis engine with the publication made on node 0 and
#               the subscriber on node 1. Pinned: Redis and the nodes on CPU 0,
#               the load generator on CPU 1.
#   fanout      FANOUT_SUBSCRIBERS subscribers at FANOUT_RATES (`volley bench
#               fanout`): one node on the memory engine, one node on Redis,
#               three nodes on Redis with the subscribers spread over them and
#               the publications made on node 0. Pinned as latency.
# The fan-out and latency runs check every delivery (offset order, exactly
# once, each seq at one offset for all subscribers).
#
# Writes JSON lines to $OUT/*.jsonl and prints a markdown summary: per
# variant, the median and the range over the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

SMOKE="${SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
    RUNS="${RUNS:-1}"
    PUBLISH_SECONDS="${PUBLISH_SECONDS:-1}"
    LATENCY_RATE="${LATENCY_RATE:-200}"
    LATENCY_SECONDS="${LATENCY_SECONDS:-1}"
    FANOUT_SUBSCRIBERS="${FANOUT_SUBSCRIBERS:-60}"
    FANOUT_RATES="${FANOUT_RATES:-10,50}"
    FANOUT_SECONDS="${FANOUT_SECONDS:-1}"
else
    RUNS="${RUNS:-3}"
    PUBLISH_SECONDS="${PUBLISH_SECONDS:-5}"
    LATENCY_RATE="${LATENCY_RATE:-1000}"
    LATENCY_SECONDS="${LATENCY_SECONDS:-10}"
    FANOUT_SUBSCRIBERS="${FANOUT_SUBSCRIBERS:-10000}"
    FANOUT_RATES="${FANOUT_RATES:-10,50}"
    FANOUT_SECONDS="${FANOUT_SECONDS:-5}"
fi
SCENARIOS="${SCENARIOS:-throughput latency fanout}"
PUBLISH_CONNECTIONS="${PUBLISH_CONNECTIONS:-16}"
PUBLISH_BATCH="${PUBLISH_BATCH:-100}"
BIN="${VOLLEY_BIN:-$ROOT/target/release/volley}"   # the load generator (and the nodes unless HUB_BIN)
OUT="${OUT:-target/bench/cluster}"
[ -x "$BIN" ] || cargo build --release -p volley-cli
export VOLLEY_BIN="${HUB_BIN:-$BIN}"   # what scripts/cluster.sh starts
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[ "${REPORT_ONLY:-0}" = 1 ] || rm -f "$OUT"/*.jsonl

# The fan-out's connections on both sides, plus the nodes' own descriptors
# (the nodes inherit this limit).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((FANOUT_SUBSCRIBERS + 200)) ]; then
    echo "cluster.sh: open-files limit $(ulimit -n) is below FANOUT_SUBSCRIBERS + 200" >&2
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/volley-bench-cluster.XXXXXX")"
CURRENT=""
cleanup() {
    [ -z "$CURRENT" ] || scripts/cluster.sh stop "$CURRENT" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export API_KEY="bench-$RANDOM$RANDOM"
cat >"$WORK/node.toml" <<TOML
allow_anonymous = true

[limits]
max_connections = 100000
max_connections_per_ip = 100000
commands_per_second = 100000

[namespaces.bench]
history_size = 100
history_ttl = 300

[namespaces.fanout]
history_size = 100
history_ttl = 300
allow_anonymous = true
TOML
{ cat "$WORK/node.toml"; printf '\n[redis]\npublish_batch = 1\n'; } >"$WORK/node-unbatched.toml"
export NODE_CONFIG="$WORK/node.toml" SHARD0_AOF=0 SHARD1_SENTINEL=0

# up NAME ENGINE NODES SHARDS REDIS_CPUS NODE_CPUS: a fresh cluster; sets NODE0..
up() {
    local name="$1"
    CURRENT="$WORK/$name"
    rm -rf "$CURRENT"
    CLUSTER_ENGINE="$2" NODES="$3" SHARDS="$4" REDIS_CPUS="$5" NODE_CPUS="$6" \
        timeout 120 scripts/cluster.sh start "$CURRENT" >"$WORK/$name.env.out" 2>"$WORK/$name.start.log" || {
        echo "cluster.sh: could not start $name:" >&2
        cat "$WORK/$name.start.log" >&2
        exit 1
    }
    # shellcheck disable=SC1091
    source "$CURRENT/cluster.env"
    NODE_ADDRS=()
    local i port_var
    for ((i = 0; i < NODES; i++)); do
        port_var="NODE${i}_PORT"
        NODE_ADDRS+=("127.0.0.1:${!port_var}")
    done
}

down() {
    scripts/cluster.sh stop "$CURRENT" >/dev/null 2>&1 || true
    CURRENT=""
}

# bounded SECS CMD...: the benchmark command, logged, killed past SECS; a
# failure (a check that failed, a timeout) is counted and the runs go on.
FAILED=()
bounded() {
    local secs="$1" rc=0
    shift
    echo "cluster.sh: $*" >&2
    timeout --kill-after=10 "$secs" "$@" || rc=$?
    [ "$rc" -eq 0 ] || FAILED+=("exit $rc: $*")
}

# cpu_ticks PID...: user + system clock ticks of the processes, summed.
cpu_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# script_calls PORT...: EVALSHA calls the Redis servers have run (not
# counting those refused with NOSCRIPT before the script was loaded).
script_calls() {
    local port total=0 n
    for port in "$@"; do
        n="$(redis-cli -p "$port" info commandstats |
            sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*failed_calls=\([0-9]*\).*/\1 - \2/p')"
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

throughput() { # RUN
    local variant engine shards variants=(memory redis-1-shard redis-1-shard-unbatched redis-2-shards)
    [ -z "${THROUGHPUT_HUB_BIN:-}" ] || variants+=(redis-1-shard-other-build)
    for variant in "${variants[@]}"; do
        local config="$WORK/node.toml" hub="$VOLLEY_BIN"
        case "$variant" in
            memory) engine=memory shards=1 ;;
            redis-1-shard) engine=redis shards=1 ;;
            redis-1-shard-unbatched) engine=redis shards=1 config="$WORK/node-unbatched.toml" ;;
            redis-1-shard-other-build) engine=redis shards=1 hub="$THROUGHPUT_HUB_BIN" ;;
            redis-2-shards) engine=redis shards=2 ;;
        esac
        NODE_CONFIG="$config" VOLLEY_BIN="$hub" up "tp-$variant" "$engine" 1 "$shards" 0 1
        local redis_pids=() redis_ports=() cpu0 line
        if [ "$engine" = redis ]; then
            redis_pids=("$(cat "$CURRENT/redis0.pid")")
            redis_ports=("$SHARD0_PORT")
            if [ "$shards" = 2 ]; then
                redis_pids+=("$(cat "$CURRENT/redis1a.pid")")
                redis_ports+=("$SHARD1_MASTER_PORT")
            fi
        fi
        cpu0="$(cpu_ticks "$(cat "$CURRENT/node0.pid")") $(cpu_ticks "${redis_pids[@]}")"
        bounded $((PUBLISH_SECONDS * 4 + 60)) taskset -c 1 "$BIN" bench publish --addr "${NODE_ADDRS[0]}" \
            --api-key "$API_KEY" -n 1000 --prefix bench:c -b "$PUBLISH_BATCH" -c "$PUBLISH_CONNECTIONS" \
            -d "$PUBLISH_SECONDS" --label "$variant" >"$WORK/publish.out"
        line="$(cat "$WORK/publish.out")"
        # The CPU the node and Redis spent, per publication (robust to what
        # other processes take from the cores), and the script calls made.
        [ -z "$line" ] || python3 - "$line" $cpu0 "$(cpu_ticks "$(cat "$CURRENT/node0.pid")")" \
            "$(cpu_ticks "${redis_pids[@]}")" "$(script_calls "${redis_ports[@]}")" "$(getconf CLK_TCK)" \
            >>"$OUT/throughput.jsonl" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
node0, redis0, node1, redis1, calls, hz = map(int, sys.argv[2:8])
n = max(r["publications"], 1)
r["node_cpu_us_per_publication"] = 1e6 * (node1 - node0) / hz / n
r["redis_cpu_us_per_publication"] = 1e6 * (redis1 - redis0) / hz / n if calls else None
r["script_calls"] = calls
print(json.dumps(r))
PY
        down
    done
}

latency() { # RUN
    up lat-memory memory 1 1 0 0
    bounded $((LATENCY_SECONDS + 60)) taskset -c 1 "$BIN" bench fanout --addr "${NODE_ADDRS[0]}" \
        --api-key "$API_KEY" -n 1 --rates "$LATENCY_RATE" -d "$LATENCY_SECONDS" \
        --json "$OUT/latency.jsonl" --label memory >/dev/null
    down
    up lat-redis redis 2 1 0 0
    bounded $((LATENCY_SECONDS + 60)) taskset -c 1 "$BIN" bench fanout --addr "${NODE_ADDRS[0]}" \
        --subscribe-addr "${NODE_ADDRS[1]}" --api-key "$API_KEY" -n 1 --rates "$LATENCY_RATE" \
        -d "$LATENCY_SECONDS" --json "$OUT/latency.jsonl" --label redis-node0-to-node1 >/dev/null
    down
}

fanout() { # RUN
    local variant engine nodes subscribe_addrs
    for variant in memory-1-node redis-1-node redis-3-nodes; do
        case "$variant" in
            memory-1-node) engine=memory nodes=1 ;;
            redis-1-node) engine=redis nodes=1 ;;
            redis-3-nodes) engine=redis nodes=3 ;;
        esac
        up "fo-$variant" "$engine" "$nodes" 1 0 0
        subscribe_addrs="$(IFS=,; echo "${NODE_ADDRS[*]}")"
        bounded 600 taskset -c 1 "$BIN" bench fanout --addr "${NODE_ADDRS[0]}" \
            --subscribe-addr "$subscribe_addrs" --api-key "$API_KEY" -n "$FANOUT_SUBSCRIBERS" \
            --rates "$FANOUT_RATES" -d "$FANOUT_SECONDS" --keep-going \
            --json "$OUT/fanout.jsonl" --label "$variant" >/dev/null
        down
    done
}

echo "cluster.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+dirty')" >&2
[ "${REPORT_ONLY:-0}" = 1 ] && RUNS=0
for ((run = 1; run <= RUNS; run++)); do
    for scenario in $SCENARIOS; do
        case "$scenario" in
            throughput | latency | fanout) "$scenario" "$run" ;;
            *) echo "cluster.sh: unknown scenario $scenario" >&2; exit 1 ;;
        esac
    done
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def by(rs, key):
    groups = {}
    for r in rs:
        groups.setdefault(key(r), []).append(r)
    return groups
def stat(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))} to {fmt(max(vals))})"
ms = lambda v: f"{v:.2f} ms"
rate = lambda v: f"{v:,.0f}"

tp = rows("throughput.jsonl")
if tp:
    print("\n### Publications per second (median, range over runs)\n")
    print("| variant | runs | publications/s | request p50 | request p99 | node CPU per publication | Redis CPU per publication | publications per script call |")
    print("|---|---|---|---|---|---|---|---|")
    us = lambda v: f"{v:.1f} µs"
    for label, rs in by(tp, lambda r: r["label"]).items():
        # Less the final check's history reads (one script call per channel).
        per_call = [r["publications"] / (r["script_calls"] - r["channels_checked"])
                    for r in rs if r.get("script_calls", 0) > r["channels_checked"]]
        print(f"| {label} | {len(rs)} | {stat([r['publications_per_sec'] for r in rs], rate)} | "
              f"{stat([r['request_p50_ms'] for r in rs], ms)} | {stat([r['request_p99_ms'] for r in rs], ms)} | "
              f"{stat([r.get('node_cpu_us_per_publication') for r in rs], us)} | "
              f"{stat([r.get('redis_cpu_us_per_publication') for r in rs], us)} | "
              f"{stat(per_call, lambda v: f'{v:.1f}') if per_call else '-'} |")
lat = rows("latency.jsonl")
lat = [r for r in lat if r["mode"] == "fanout"]
if lat:
    print("\n### Publish-to-delivery latency (median, range over runs)\n")
    print("| variant | runs | achieved/s | p50 | p99 | max | complete |")
    print("|---|---|---|---|---|---|---|")
    for label, rs in by(lat, lambda r: r["label"]).items():
        print(f"| {label} | {len(rs)} | {stat([r['achieved_rate'] for r in rs], rate)} | "
              f"{stat([r['p50_ms'] for r in rs], ms)} | {stat([r['p99_ms'] for r in rs], ms)} | "
              f"{stat([r['max_ms'] for r in rs], ms)} | {'yes' if all(r['complete'] for r in rs) else 'NO'} |")
fo = rows("fanout.jsonl")
fo = [r for r in fo if r["mode"] == "fanout"]
if fo:
    n = fo[0]["subscribers"]
    print(f"\n### Fan-out to {n:,} subscribers: publish-to-last-delivery (median, range over runs)\n")
    print("| variant | events/s | runs | achieved/s | deliveries/s | p50 | p99 | max | complete |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (label, r0), rs in by(fo, lambda r: (r["label"], r["rate"])).items():
        print(f"| {label} | {r0:g} | {len(rs)} | {stat([r['achieved_rate'] for r in rs], rate)} | "
              f"{stat([r['deliveries_per_sec'] for r in rs], rate)} | {stat([r['p50_ms'] for r in rs], ms)} | "
              f"{stat([r['p99_ms'] for r in rs], ms)} | {stat([r['max_ms'] for r in rs], ms)} | "
              f"{sum(1 for r in rs if r['complete'])}/{len(rs)} |")
PY
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo >&2
    printf 'cluster.sh: FAILED %s\n' "${FAILED[@]}" >&2
    exit 1
fi
