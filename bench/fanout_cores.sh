#!/usr/bin/env bash
# Issue 14's fan-out acceptance, side by side in one sitting (medians of RUNS):
#
#   one core:  the hub on CPU 0 (`--threads 1`), the load generator on CPU 1,
#              with bench/tcp_fanout_floor.c run just before and just after
#              it with the same number of connections: the hub's CPU per event
#              and its p99 to the last subscriber against the mean of the two
#              floor runs' CPU and wall time per round of sends (this machine
#              has slow spells of minutes; a run whose two floors differ by
#              more than 15 % is marked, as it straddles one);
#   two cores: nothing pinned, the hub on 2 connection threads (`--threads 2`)
#              and the load generator sharing both CPUs: its p99 against the
#              one-core p99; then the floor program the same way (SENDERS=2:
#              two sender threads and its reader, nothing pinned), the
#              kernel's own two-core time per round against its one-core one,
#              and the floor reader's CPU per round: the reads alone cost
#              the shared CPUs that much per event. From the CPU times, the
#              least two-core / one-core ratio the work allows (one core:
#              sender and reader side by side, the larger CPU time; two
#              shared cores: half the sum), for the floor and for the hub.
#
# It also pools every measured event of the runs (`volley bench fanout
# --events`) and every round of the floors (ROUNDS_FILE): the runs alternate
# with the floors, so many short runs sample the machine's slow spells alike
# in both, and the pooled p99 is over hundreds of events, not 2 of 200.
#
#   bench/fanout_cores.sh
#   RUNS=8 SECONDS_PER_RATE=6 ENGINE=epoll bench/fanout_cores.sh   (short runs, pooled)
#   RUNS=5 SECONDS_PER_RATE=30 ENGINE=raw bench/fanout_cores.sh
#
# Every delivery is checked by `volley bench fanout` (order, exactly once,
# completeness); a run with an error fails the script. Raw outputs are kept
# in target/bench/cores-*.{txt,jsonl}.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
export SUBSCRIBERS="${SUBSCRIBERS:-10000}"
export RATES="${RATE:-10}"
export SECONDS_PER_RATE="${SECONDS_PER_RATE:-20}"
mkdir -p target/bench
[ -x "${VOLLEY_BIN:-target/release/volley}" ] || cargo build --release -p volley-cli

cc -O2 -pthread -o target/bench/tcp_fanout_floor bench/tcp_fanout_floor.c
ulimit -n "$(ulimit -Hn)"
FLOOR_N=$(( $(ulimit -n) / 2 - 100 ))
[ "$FLOOR_N" -le "$SUBSCRIBERS" ] || FLOOR_N="$SUBSCRIBERS"

# Each event's latency and each floor round's time, pooled over the runs below.
rm -f target/bench/cores-*.events target/bench/cores-*.rounds
for run in $(seq "$RUNS"); do
    echo "fanout_cores.sh: run $run of $RUNS: one core" >&2
    ROUNDS_FILE=target/bench/cores-one.rounds \
        target/bench/tcp_fanout_floor "$FLOOR_N" >"target/bench/cores-one-$run.floor-before.txt"
    PIN=1 HUB_THREADS=1 FLOOR=1 OUT="target/bench/cores-one-$run.jsonl" \
        EVENTS=target/bench/cores-one.events ROUNDS_FILE=target/bench/cores-one.rounds \
        bench/fanout.sh >"target/bench/cores-one-$run.txt" 2>&1
    echo "fanout_cores.sh: run $run of $RUNS: two cores" >&2
    PIN=0 HUB_THREADS=2 FLOOR=0 OUT="target/bench/cores-two-$run.jsonl" \
        EVENTS=target/bench/cores-two.events \
        bench/fanout.sh >"target/bench/cores-two-$run.txt" 2>&1
    # The kernel's floor in the same setting: two sender threads and the
    # reader, nothing pinned.
    SENDERS=2 ROUNDS_FILE=target/bench/cores-two.rounds \
        target/bench/tcp_fanout_floor "$FLOOR_N" >"target/bench/cores-two-$run.floor.txt"
done

python3 - "$RUNS" <<'PY'
import json, re, statistics, sys
runs = int(sys.argv[1])

def step(path):
    rows = [json.loads(l) for l in open(path)]
    [r] = [r for r in rows if r["mode"] == "fanout"]
    if r["errors"] or not r["complete"]:
        sys.exit(f"{path}: {r['errors']} errors, complete={r['complete']}")
    r["hub_ms_per_event"] = r["hub_cpu_percent"] / 100 / r["achieved_rate"] * 1000
    return r

def floor(path, what=r"sender CPU"):
    text = open(path).read()
    wall = re.search(r"mean ([0-9.]+) ms per round", text)
    cpu = re.search(what + r" ([0-9.]+) ms per round", text)
    return float(wall.group(1)), float(cpu.group(1))

marked = []

rows = []
for i in range(1, runs + 1):
    one = step(f"target/bench/cores-one-{i}.jsonl")
    two = step(f"target/bench/cores-two-{i}.jsonl")
    wall_b, cpu_b = floor(f"target/bench/cores-one-{i}.floor-before.txt")
    wall_a, cpu_a = floor(f"target/bench/cores-one-{i}.txt")
    wall_2, _ = floor(f"target/bench/cores-two-{i}.floor.txt")
    _, reader = floor(f"target/bench/cores-one-{i}.floor-before.txt", r"reader CPU")
    wall, cpu = (wall_b + wall_a) / 2, (cpu_b + cpu_a) / 2
    if max(cpu_b, cpu_a) > 1.15 * min(cpu_b, cpu_a):
        marked.append(i)
    rows.append(dict(
        hub_cpu=one["hub_ms_per_event"], floor_cpu=cpu, floor_wall=wall,
        one_p50=one["p50_ms"], one_p99=one["p99_ms"], two_p50=two["p50_ms"], two_p99=two["p99_ms"],
        two_hub_cpu=two["hub_ms_per_event"], one_rate=one["achieved_rate"], two_rate=two["achieved_rate"],
        one_loadgen=one["loadgen_cpu_ms_per_event"], two_loadgen=two["loadgen_cpu_ms_per_event"],
        floor_before=cpu_b, floor_after=cpu_a,
        cpu_ratio=one["hub_ms_per_event"] / cpu, p99_ratio=one["p99_ms"] / wall,
        cores_ratio=two["p99_ms"] / one["p99_ms"], floor_two_wall=wall_2,
        floor_cores_ratio=wall_2 / wall, floor_reader=reader,
        # The least mean wall time per event: with one CPU each, the larger
        # of the sender's and the reader's CPU (they run side by side); on
        # two shared CPUs, half their sum (any split of the work). Their
        # ratio is the least two-core / one-core ratio that work allows:
        # for the send(2)s and recv(2)s alone (the floor program), and for
        # this hub and load generator.
        kernel_bound=(cpu + reader) / 2 / max(cpu, reader),
        hub_bound=(two["hub_ms_per_event"] + two["loadgen_cpu_ms_per_event"]) / 2
        / max(one["hub_ms_per_event"], one["loadgen_cpu_ms_per_event"])))

def col(k):
    vals = [r[k] for r in rows]
    return f"{statistics.median(vals):.2f} ({', '.join(f'{v:.2f}' for v in vals)})"

print("| measure | median (runs) |")
print("|---|---|")
for k, what in [
    ("hub_cpu", "one core: hub CPU per event, ms"),
    ("floor_before", "floor before the hub: sender CPU per round, ms"),
    ("floor_after", "floor after the hub: sender CPU per round, ms"),
    ("floor_cpu", "floor: sender CPU per round (mean of the two), ms"),
    ("cpu_ratio", "hub CPU per event / floor CPU per round (target <= 1.15)"),
    ("one_p50", "one core: p50 to the last subscriber, ms"),
    ("one_p99", "one core: p99 to the last subscriber, ms"),
    ("floor_wall", "floor: wall time per round, ms"),
    ("p99_ratio", "one core: p99 / floor wall per round (target <= 1.3)"),
    ("two_p50", "two cores: p50 to the last subscriber, ms"),
    ("two_p99", "two cores: p99 to the last subscriber, ms"),
    ("cores_ratio", "two-core p99 / one-core p99 (target <= 0.75)"),
    ("floor_two_wall", "floor, two sender threads, nothing pinned: wall time per round, ms"),
    ("floor_cores_ratio", "floor: two-sender wall / one-sender wall per round"),
    ("floor_reader", "floor: reader CPU per round (epoll and recv alone), ms"),
    ("kernel_bound", "floor: (sender CPU + reader CPU) / 2 / the larger of the two: the least two-core / one-core ratio of mean times for the sends and reads alone"),
    ("hub_bound", "hub: (two-core hub CPU + load generator CPU) / 2 / the larger of the one-core two: the same for this hub and load generator"),
    ("two_hub_cpu", "two cores: hub CPU per event, ms"),
    ("one_loadgen", "one core: load generator CPU per event, ms"),
    ("two_loadgen", "two cores: load generator CPU per event, ms"),
    ("one_rate", "one core: events/s achieved"),
    ("two_rate", "two cores: events/s achieved"),
]:
    print(f"| {what} | {col(k)} |")
# Pooled: every measured event of the runs, every floor round before and
# after them. The runs alternate with the floors, so on a machine with slow
# spells both sample the same spells; the floor's tail is its p99 round.
def pooled(path, column=None):
    vals = []
    for line in open(path):
        f = line.split()
        # --events lines: step (or `warmup`), seq, published, http, last.
        if column is None:
            vals.append(float(f[0]))
        elif f[0] != "warmup" and f[column] != "-":
            vals.append(float(f[column]))
    vals.sort()
    return vals

def pct(vals, p):
    return vals[min(len(vals) - 1, int(p * len(vals)))]

one_ev = pooled("target/bench/cores-one.events", 4)
two_ev = pooled("target/bench/cores-two.events", 4)
rounds = pooled("target/bench/cores-one.rounds")
rounds_two = pooled("target/bench/cores-two.rounds")
fmean = statistics.mean(rounds)
print()
print(f"pooled over the {runs} runs: one core {len(one_ev)} events, p50 {pct(one_ev, .5):.1f} ms, "
      f"p99 {pct(one_ev, .99):.1f} ms; two cores {len(two_ev)} events, p50 {pct(two_ev, .5):.1f} ms, "
      f"p99 {pct(two_ev, .99):.1f} ms; floor {len(rounds)} rounds, mean {fmean:.1f} ms, "
      f"median {pct(rounds, .5):.1f} ms, p99 {pct(rounds, .99):.1f} ms")
print(f"pooled: one-core p99 / floor mean round {pct(one_ev, .99) / fmean:.2f} (target <= 1.3); "
      f"one-core p99 / floor p99 round {pct(one_ev, .99) / pct(rounds, .99):.2f}; "
      f"one-core p50 / floor median round {pct(one_ev, .5) / pct(rounds, .5):.2f}; "
      f"two-core p99 / one-core p99 {pct(two_ev, .99) / pct(one_ev, .99):.2f} (target <= 0.75)")
print(f"pooled floor, two senders: {len(rounds_two)} rounds, mean {statistics.mean(rounds_two):.1f} ms, "
      f"p99 {pct(rounds_two, .99):.1f} ms; two-sender / one-sender: mean {statistics.mean(rounds_two) / fmean:.2f}, "
      f"p99 {pct(rounds_two, .99) / pct(rounds, .99):.2f}")
if marked:
    print()
    print(f"runs {', '.join(map(str, marked))}: the floors before and after the hub differ by more than 15 % "
          "(a slow spell began or ended during the run); their ratios against the floor are not comparable")
    kept = [r for i, r in enumerate(rows, 1) if i not in marked]
    if kept:
        for k, what in [("cpu_ratio", "hub CPU / floor CPU"), ("p99_ratio", "one-core p99 / floor wall")]:
            vals = [r[k] for r in kept]
            print(f"the other runs: {what} {statistics.median(vals):.2f} ({', '.join(f'{v:.2f}' for v in vals)})")
PY
