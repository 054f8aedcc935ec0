#!/usr/bin/env bash
# Runs the real Autobahn|Testsuite against volley and checks the results.
#
#   tests/autobahn/run.sh server   wstest -m fuzzingclient tests `volley echo` (our server)
#   tests/autobahn/run.sh client   wstest -m fuzzingserver is tested by `volley testee` (our client)
#
# The two roles use their own free ports and report dirs
# (tests/autobahn/reports/{server,client}), so they can run at the same time.
#
# Env:
#   VOLLEY_BIN        volley binary (default: target/release/volley, relative to the repo root)
#   AUTOBAHN_CASES    case patterns, comma/space separated (default "*" = all cases 1-13),
#                     e.g. "1.*,2.*,7.7.*" or "6.4.3"
#   AUTOBAHN_EXCLUDE  case patterns to leave out (default: none), e.g. "12.*,13.*"
#   AUTOBAHN_AGENT    agent name in the reports (default: volley)
#   AUTOBAHN_TIMEOUT  seconds allowed for the whole wstest run (default: 1800)
#   AUTOBAHN_UPDATE_EXPECTED=1  rewrite expected-<role>.json from this run (compare.py --write-expected)
#   AUTOBAHN_SKIP_SETUP=1       don't call setup.sh (the venv must exist)
#   AUTOBAHN_REPORTS_DIR        parent of the {server,client} report dirs (default tests/autobahn/reports);
#                               give each concurrent run of the *same* role its own
set -euo pipefail

ROLE="${1:-}"
case "$ROLE" in
server | client) ;;
*)
    echo "usage: $0 server|client" >&2
    exit 2
    ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
OUT="${AUTOBAHN_REPORTS_DIR:-$HERE/reports}/$ROLE"
AGENT="${AUTOBAHN_AGENT:-volley}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1800}"
VOLLEY_BIN="${VOLLEY_BIN:-target/release/volley}"
case "$VOLLEY_BIN" in /*) ;; *) VOLLEY_BIN="$ROOT/$VOLLEY_BIN" ;; esac
START=$SECONDS
TAG="autobahn[$ROLE]"

log() { echo "$TAG: $*"; }
die() {
    echo "$TAG: ERROR: $*" >&2
    exit 1
}

# ---- process bookkeeping: everything we start is killed on exit ----------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        # `timeout` makes itself a process-group leader: kill the whole group.
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

# start_bg LOGFILE TIMEOUT CMD...  -> sets BG_PID
start_bg() {
    local logfile="$1" secs="$2"
    shift 2
    timeout --kill-after=10 "$secs" "$@" >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT PID SECONDS: wait until something accepts on 127.0.0.1:PORT
wait_port() {
    local port="$1" pid="$2" deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

show_tail() {
    local f="$1"
    [ -f "$f" ] || return 0
    echo "---- last ${2:-30} lines of $f ----"
    tail -n "${2:-30}" "$f"
    echo "----"
}

# ---- setup -----------------------------------------------------------------
if [ "${AUTOBAHN_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi
[ -x "$VENV/bin/wstest" ] || die "wstest missing in $VENV (run tests/autobahn/setup.sh)"
[ -x "$VOLLEY_BIN" ] || die "volley binary not found at $VOLLEY_BIN (build it: cargo build --release, or set VOLLEY_BIN)"
command -v python3 >/dev/null || die "python3 is required"

rm -rf "$OUT"
mkdir -p "$OUT"
SPEC="$OUT/spec.json"
PORT="$(free_port)"
URL="ws://127.0.0.1:$PORT"
if [ "$ROLE" = server ]; then TEMPLATE="$HERE/fuzzingclient.json"; else TEMPLATE="$HERE/fuzzingserver.json"; fi

# Render the committed template into the real spec for this run.
python3 - "$TEMPLATE" "$SPEC" "$URL" "$OUT" "$AGENT" <<'PY'
import json, os, re, sys

template, dest, url, outdir, agent = sys.argv[1:]
with open(template) as f:
    spec = json.load(f)

def patterns(value):
    return [p for p in re.split(r"[\s,]+", value or "") if p]

spec["cases"] = patterns(os.environ.get("AUTOBAHN_CASES", "*")) or ["*"]
spec["exclude-cases"] = patterns(os.environ.get("AUTOBAHN_EXCLUDE", ""))
spec["outdir"] = outdir
if "servers" in spec:  # fuzzingclient: we are the server under test
    spec["servers"][0]["url"] = url
    spec["servers"][0]["agent"] = agent
else:  # fuzzingserver: our client connects here
    spec["url"] = url
with open(dest, "w") as f:
    json.dump(spec, f, indent=3)
    f.write("\n")
PY

log "cases=[${AUTOBAHN_CASES:-*}] exclude=[${AUTOBAHN_EXCLUDE:-}] url=$URL reports=$OUT"
FAILED=0
WSTEST_LOG="$OUT/wstest.log"
VOLLEY_LOG="$OUT/volley.log"
export PYTHONWARNINGS=ignore

if [ "$ROLE" = server ]; then
    # Our server, bounded: it must outlive the wstest run.
    start_bg "$VOLLEY_LOG" $((RUN_TIMEOUT + 60)) "$VOLLEY_BIN" echo --port "$PORT" --host 127.0.0.1
    VOLLEY_PID=$BG_PID
    if ! wait_port "$PORT" "$VOLLEY_PID" 30; then
        show_tail "$VOLLEY_LOG"
        die "volley echo did not start listening on $PORT within 30s"
    fi
    log "volley echo listening on $PORT; running wstest -m fuzzingclient (log: $WSTEST_LOG)"

    t=$SECONDS
    (cd "$OUT" && exec timeout --kill-after=10 "$RUN_TIMEOUT" "$VENV/bin/wstest" -m fuzzingclient -s "$SPEC") \
        >"$WSTEST_LOG" 2>&1 </dev/null &
    WSTEST_PID=$!
    PIDS+=("$WSTEST_PID")
    rc=0
    wait "$WSTEST_PID" || rc=$?
    log "wstest finished in $((SECONDS - t))s (rc=$rc)"
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        [ "$rc" -eq 124 ] && log "wstest TIMED OUT after ${RUN_TIMEOUT}s"
        show_tail "$WSTEST_LOG"
    fi
    if ! kill -0 "$VOLLEY_PID" 2>/dev/null; then
        vrc=0
        wait "$VOLLEY_PID" || vrc=$?
        log "volley echo DIED during the run (rc=$vrc)"
        show_tail "$VOLLEY_LOG" 50
        FAILED=1
    fi
else
    # shellcheck disable=SC2016 # $1.. are expanded by the inner bash
    start_bg "$WSTEST_LOG" $((RUN_TIMEOUT + 120)) \
        bash -c 'cd "$1" && exec "$2" -m fuzzingserver -s "$3" -u 0' _ "$OUT" "$VENV/bin/wstest" "$SPEC"
    WSTEST_PID=$BG_PID
    if ! wait_port "$PORT" "$WSTEST_PID" 60; then
        show_tail "$WSTEST_LOG"
        die "wstest fuzzingserver did not start listening on $PORT within 60s"
    fi
    log "wstest fuzzingserver listening on $PORT; running volley testee (log: $VOLLEY_LOG)"

    t=$SECONDS
    timeout --kill-after=10 "$RUN_TIMEOUT" "$VOLLEY_BIN" testee --url "$URL" --agent "$AGENT" \
        >"$VOLLEY_LOG" 2>&1 </dev/null &
    TESTEE_PID=$!
    PIDS+=("$TESTEE_PID")
    rc=0
    wait "$TESTEE_PID" || rc=$?
    log "volley testee finished in $((SECONDS - t))s (rc=$rc)"
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        [ "$rc" -eq 124 ] && log "volley testee TIMED OUT after ${RUN_TIMEOUT}s"
        show_tail "$VOLLEY_LOG" 50
    fi
    if ! kill -0 "$WSTEST_PID" 2>/dev/null; then
        log "wstest fuzzingserver exited early"
        show_tail "$WSTEST_LOG"
        FAILED=1
    elif [ ! -f "$OUT/index.json" ]; then
        # The testee did not get to /updateReports: ask for the reports
        # ourselves so the cases that did run can still be compared.
        log "no report yet; requesting /updateReports?agent=$AGENT"
        timeout 600 python3 - "$PORT" "$AGENT" <<'PY' || log "updateReports request failed"
import base64, os, socket, sys, urllib.parse

port, agent = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=590)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((
    "GET /updateReports?agent=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
    % (urllib.parse.quote(agent), port, key)).encode())
# The server writes the reports, then closes; read until it drops us.
try:
    while s.recv(65536):
        pass
except ConnectionResetError:
    pass  # it aborts the TCP connection since we never answer its close frame
PY
    fi
fi

# ---- compare -------------------------------------------------------------------
COMPARE_ARGS=(--role "$ROLE" --agent "$AGENT")
if [ "${AUTOBAHN_UPDATE_EXPECTED:-0}" = "1" ]; then
    COMPARE_ARGS+=(--write-expected)
fi
crc=0
python3 "$HERE/compare.py" "${COMPARE_ARGS[@]}" "$OUT" || crc=$?
[ "$crc" -eq 0 ] || FAILED=1

if [ "$FAILED" -ne 0 ]; then
    log "FAILED after $((SECONDS - START))s (reports: $OUT/index.html)"
    exit 1
fi
log "passed in $((SECONDS - START))s"
