#!/usr/bin/env bash
# Interop tests of volley against third-party peers.
#
#   1. harness self-check: python_client.py (websockets) against node_server.mjs (ws)
#   2. volley's server:    `volley echo` tested by python_client.py (websockets)
#   3. volley's client:    $INTEROP_CLIENT_CMD against node_server.mjs (ws),
#                          once plain and once with --deflate (compression is
#                          only used if volley's client offers it)
#
# Env:
#   VOLLEY_BIN          volley binary (default: target/release/volley)
#   INTEROP_CLIENT_CMD  volley's interop client; gets the ws:// URL as its last
#                       argument (default: target/release/examples/interop_client).
#                       May be a command line, e.g.
#                       "cargo run --release --example interop_client -p volley --"
#   INTEROP_TIMEOUT     seconds per step (default: 180)
#   INTEROP_SKIP_SETUP=1  don't call setup.sh
#   INTEROP_STEPS       which steps to run (default: "self server client")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STEP_TIMEOUT="${INTEROP_TIMEOUT:-180}"
STEPS="${INTEROP_STEPS:-self server client}"
VOLLEY_BIN="${VOLLEY_BIN:-target/release/volley}"
case "$VOLLEY_BIN" in /*) ;; *) VOLLEY_BIN="$ROOT/$VOLLEY_BIN" ;; esac
read -r -a CLIENT_CMD <<<"${INTEROP_CLIENT_CMD:-target/release/examples/interop_client}"
# A relative path (with a slash) is relative to the repo root; a bare name is looked up in PATH.
case "${CLIENT_CMD[0]}" in /*) ;; */*) CLIENT_CMD[0]="$ROOT/${CLIENT_CMD[0]}" ;; esac
LOGDIR="${INTEROP_LOG_DIR:-$ROOT/target/test-logs/interop}"
PYTHON="$HERE/.venv/bin/python"
START=$SECONDS

log() { echo "interop: $*"; }
die() {
    echo "interop: ERROR: $*" >&2
    exit 1
}

# ---- process bookkeeping ------------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # PORT PID SECONDS
    local port="$1" pid="$2" deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

show_tail() {
    [ -f "$1" ] || return 0
    echo "---- last ${2:-30} lines of $1 ----"
    tail -n "${2:-30}" "$1"
    echo "----"
}

# run_fg NAME CMD...: run a bounded command in the background and wait for it
# (so that INT/TERM reach our trap at once); output goes to the terminal.
run_fg() {
    local name="$1" rc=0 pid
    shift
    timeout --kill-after=10 "$STEP_TIMEOUT" "$@" </dev/null &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    [ "$rc" -ne 124 ] || log "$name TIMED OUT after ${STEP_TIMEOUT}s"
    return "$rc"
}

# start_node LOGNAME [--deflate] -> NODE_PORT. The server's stdin is a pipe
# held by this script, so it also exits if this script dies.
start_node() {
    local name="$1" out="$LOGDIR/$1.out" err="$LOGDIR/$1.log" deadline
    shift
    : >"$out" # never read a previous run's LISTENING line
    : >"$err"
    exec {NODE_FD}> >(exec timeout --kill-after=10 $((STEP_TIMEOUT * 2)) node "$HERE/node_server.mjs" 0 "$@" >"$out" 2>"$err")
    PIDS+=("$!")
    deadline=$((SECONDS + 30))
    NODE_PORT=""
    while [ $SECONDS -lt "$deadline" ]; do
        NODE_PORT="$(awk '/^LISTENING /{print $2; exit}' "$out" 2>/dev/null || true)"
        [ -z "$NODE_PORT" ] || break
        sleep 0.1
    done
    if [ -z "$NODE_PORT" ]; then
        show_tail "$err"
        die "node_server.mjs $* did not print LISTENING within 30s"
    fi
}

stop_node() {
    exec {NODE_FD}>&- # closing its stdin makes it exit
}

# ---- setup ---------------------------------------------------------------------
if [ "${INTEROP_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi
[ -x "$PYTHON" ] || die "missing $PYTHON (run tests/interop/setup.sh)"
mkdir -p "$LOGDIR"

PASSED=0
FAILED=0
RESULTS=()
record() { # NAME RC SECONDS
    if [ "$2" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        RESULTS+=("PASS  $1 ($3s)")
    else
        FAILED=$((FAILED + 1))
        RESULTS+=("FAIL  $1 (rc=$2, $3s)")
    fi
}

for step in $STEPS; do
    case "$step" in
    self)
        log "== python websockets client -> node ws echo server (harness self-check)"
        t=$SECONDS
        start_node node-self
        rc=0
        run_fg "python client vs node" "$PYTHON" "$HERE/python_client.py" "ws://127.0.0.1:$NODE_PORT" || rc=$?
        stop_node
        [ "$rc" -eq 0 ] || show_tail "$LOGDIR/node-self.log"
        record "python websockets -> node ws (self-check)" "$rc" $((SECONDS - t))
        ;;
    server)
        log "== python websockets client -> volley echo"
        t=$SECONDS
        rc=0
        if [ ! -x "$VOLLEY_BIN" ]; then
            log "volley binary not found at $VOLLEY_BIN"
            rc=127
        else
            port="$(free_port)"
            vlog="$LOGDIR/volley-echo.log"
            timeout --kill-after=10 $((STEP_TIMEOUT * 2)) "$VOLLEY_BIN" echo --port "$port" --host 127.0.0.1 >"$vlog" 2>&1 </dev/null &
            vpid=$!
            PIDS+=("$vpid")
            if ! wait_port "$port" "$vpid" 30; then
                show_tail "$vlog"
                log "volley echo did not listen on $port within 30s"
                rc=1
            else
                run_fg "python client vs volley" "$PYTHON" "$HERE/python_client.py" --expect-deflate "ws://127.0.0.1:$port" || rc=$?
                if ! kill -0 "$vpid" 2>/dev/null; then
                    log "volley echo DIED during the test"
                    rc=1
                fi
            fi
            kill -TERM -- "-$vpid" 2>/dev/null || kill -TERM "$vpid" 2>/dev/null || true
            [ "$rc" -eq 0 ] || show_tail "$vlog"
        fi
        record "python websockets -> volley echo" "$rc" $((SECONDS - t))
        ;;
    client)
        for mode in plain deflate; do
            log "== volley interop client -> node ws echo server ($mode)"
            t=$SECONDS
            rc=0
            if ! command -v "${CLIENT_CMD[0]}" >/dev/null 2>&1 && [ ! -x "${CLIENT_CMD[0]}" ]; then
                log "interop client not found: ${CLIENT_CMD[*]} (build it: cargo build --release --examples, or set INTEROP_CLIENT_CMD)"
                rc=127
            else
                if [ "$mode" = deflate ]; then start_node "node-$mode" --deflate; else start_node "node-$mode"; fi
                expect=()
                [ "$mode" != deflate ] || expect=(--expect-deflate)
                run_fg "volley client vs node ($mode)" "${CLIENT_CMD[@]}" "ws://127.0.0.1:$NODE_PORT" "${expect[@]}" || rc=$?
                stop_node
                [ "$rc" -eq 0 ] || show_tail "$LOGDIR/node-$mode.log"
            fi
            record "volley client -> node ws ($mode)" "$rc" $((SECONDS - t))
        done
        ;;
    *) die "unknown step '$step' in INTEROP_STEPS" ;;
    esac
done

echo
printf '%s\n' "${RESULTS[@]}"
log "finished in $((SECONDS - START))s (logs: $LOGDIR)"
echo "interop: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
