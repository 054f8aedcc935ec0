#!/usr/bin/env bash
# Acceptance test of `volley serve` by a third-party client: Python
# `websockets` speaking volley.v1 from docs/protocol.md (python_client.py).
#
#   1. writes a config (anonymous connections, an HS256 secret, an Origin
#      allowlist, small limits, namespaces `room` with history, presence,
#      join/leave and client publishing, `hist` with history only, `plain`
#      without history),
#   2. starts `$VOLLEY_BIN serve --listen 127.0.0.1:0 --config FILE` and reads
#      the bound address from its first stdout line,
#   3. runs python_client.py against it,
#   4. (its last check sends the server SIGTERM and follows the drain) checks
#      that the server exits 0,
#   5. does the same in demo mode (no --config; --api-key and --admin-key given)
#      with `python_client.py --demo`,
#   6. runs the checks of 3. and 4. again over TLS (--tls-cert/--tls-key with a
#      self-signed certificate made by openssl; wss:// and https://).
#
# Ends with `hub: N passed, M failed`; exits non-zero on any failure.
#
# Env:
#   VOLLEY_BIN          the volley binary (default: target/release/volley)
#   HUB_TIMEOUT         seconds for the whole Python run (default: 120)
#   HUB_SKIP_SETUP=1    don't call setup.sh
#   HUB_LOG_DIR         where the server's output goes (default: target/test-logs/hub)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VOLLEY_BIN="${VOLLEY_BIN:-target/release/volley}"
case "$VOLLEY_BIN" in /*) ;; *) VOLLEY_BIN="$ROOT/$VOLLEY_BIN" ;; esac
TIMEOUT="${HUB_TIMEOUT:-120}"
LOGDIR="${HUB_LOG_DIR:-$ROOT/target/test-logs/hub}"
PYTHON="$HERE/.venv/bin/python"
START=$SECONDS

log() { echo "hub: $*"; }
die() {
    echo "hub: ERROR: $*" >&2
    exit 1
}

[ -x "$VOLLEY_BIN" ] || die "volley binary not found at $VOLLEY_BIN (cargo build --release -p volley-cli)"
if [ "${HUB_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi
[ -x "$PYTHON" ] || die "missing $PYTHON (run tests/hub/setup.sh)"
mkdir -p "$LOGDIR"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/volley-hub-test.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # SERVER_PID is `timeout`'s, which cannot pass a SIGKILL on: the
        # server (its child) first, or it would be left running.
        pkill -KILL -P "$SERVER_PID" 2>/dev/null || true
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

API_KEY="hub-test-api-$RANDOM$RANDOM"
ADMIN_KEY="hub-test-admin-$RANDOM$RANDOM"
SECRET="hub-test-secret-$RANDOM$RANDOM$RANDOM"
CONFIG="$WORK/volley.toml"
cat >"$CONFIG" <<TOML
api_key = "$API_KEY"
admin_key = "$ADMIN_KEY"
allow_anonymous = true
allowed_origins = ["http://good.example"]

[auth]
hmac_secret = "$SECRET"

[limits]
max_channels_per_connection = 10
commands_per_second = 200
connect_timeout_ms = 1500

[drain]
grace_ms = 3000
spread_ms = 1000

[namespaces.room]
presence = true
join_leave = true
history_size = 2000
history_ttl = 600
allow_publish = true
allow_anonymous = true

[namespaces.hist]
history_size = 2000
history_ttl = 600
allow_anonymous = true

[namespaces.plain]
allow_anonymous = true
TOML

# start_server NAME ARGS...: starts `volley serve ARGS` with stdout and stderr
# in $LOGDIR/NAME.{out,log}; sets SERVER_PID and ADDR (from the first stdout line).
start_server() {
    local name="$1" first="" deadline
    shift
    OUT="$LOGDIR/$name.out"
    ERR="$LOGDIR/$name.log"
    : >"$OUT"
    : >"$ERR"
    # Killed by stop_server or the EXIT trap; `timeout` bounds it if this script is SIGKILLed.
    # SERVER_PID is `timeout`'s, which passes a SIGTERM on (the drain check's and
    # stop_server's). --foreground: without it, timeout sends the signal to the
    # server and then to its whole process group, so the server can see two
    # SIGTERMs and take the second for "exit now" during its drain. And a
    # signal passed on arms --kill-after: 30 s, past a drain's 3 s grace and
    # its closing, and past stop_server's 15 s wait.
    timeout --foreground --kill-after=30 $((TIMEOUT + 60)) "$VOLLEY_BIN" serve --listen 127.0.0.1:0 "$@" \
        >"$OUT" 2>"$ERR" </dev/null &
    SERVER_PID=$!
    deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        # A complete first line (newline-terminated) is there.
        if [ "$(wc -l <"$OUT")" -ge 1 ]; then
            first="$(head -n 1 "$OUT")"
            break
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    ADDR="$(printf '%s\n' "$first" | sed -n "s#^volley serve listening on ${SCHEME:-http}://\\([0-9.]*:[0-9]*\\)/\$#\\1#p")"
    if [ -z "$ADDR" ]; then
        echo "---- server stdout ----"; cat "$OUT"; echo "---- server stderr (last 40 lines) ----"; tail -n 40 "$ERR"
        die "the first stdout line is not 'volley serve listening on ${SCHEME:-http}://ADDR/' (got: '$first')"
    fi
    log "$name: server pid $SERVER_PID listening on $ADDR"
}

# stop_server NAME: SIGTERM, then the server must exit 0 within 15 s. Returns 1 otherwise.
stop_server() {
    local name="$1" src=0
    # The config phase's last check drains the server itself (SIGTERM);
    # either way the process must end with status 0 within 15 s.
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "FAIL  $name: the server did not exit within 15 s of SIGTERM"
        return 1
    fi
    wait "$SERVER_PID" || src=$?
    SERVER_PID=""
    if [ "$src" -ne 0 ]; then
        log "FAIL  $name: SIGTERM -> exit $src"
        return 1
    fi
    log "PASS  $name: exit 0 after SIGTERM"
    SERVER_EXIT_PASSED=$((SERVER_EXIT_PASSED + 1))
}

# phase_result RC: a failed phase fails the run and shows the server's last log lines.
phase_result() {
    if [ "$1" -ne 0 ]; then
        rc=1
        echo "---- server stderr (last 40 lines, full log in $ERR) ----"
        tail -n 40 "$ERR"
    fi
}

rc=0
SERVER_EXIT_PASSED=0
# ---- 1. with a config file -------------------------------------------------------
start_server config --config "$CONFIG"
prc=0
timeout --kill-after=5 "$TIMEOUT" "$PYTHON" "$HERE/python_client.py" \
    --ws "ws://$ADDR/connection/websocket" --http "http://$ADDR" \
    --api-key "$API_KEY" --token-secret "$SECRET" --server-pid "$SERVER_PID" | tee "$WORK/config.txt" || prc=$?
[ "$prc" -ne 124 ] || log "python_client.py TIMED OUT after ${TIMEOUT}s"
stop_server config || prc=1
phase_result "$prc"

# ---- 2. demo mode (no config), keys from the command line --------------------------
start_server demo --api-key "$API_KEY" --admin-key "$ADMIN_KEY"
prc=0
timeout --kill-after=5 "$TIMEOUT" "$PYTHON" "$HERE/python_client.py" --demo \
    --ws "ws://$ADDR/connection/websocket" --http "http://$ADDR" \
    --api-key "$API_KEY" --admin-key "$ADMIN_KEY" --serve-stdout "$OUT" | tee "$WORK/demo.txt" || prc=$?
[ "$prc" -ne 124 ] || log "python_client.py --demo TIMED OUT after ${TIMEOUT}s"
stop_server demo || prc=1
phase_result "$prc"
# ---- 3. TLS: the same checks over wss:// and https:// -------------------------------
if command -v openssl >/dev/null 2>&1; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1 ||
        die "openssl could not make a test certificate"
    SCHEME=https start_server tls --config "$CONFIG" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    prc=0
    timeout --kill-after=5 "$TIMEOUT" "$PYTHON" "$HERE/python_client.py" --cafile "$WORK/cert.pem" \
        --ws "wss://$ADDR/connection/websocket" --http "https://$ADDR" \
        --api-key "$API_KEY" --token-secret "$SECRET" --server-pid "$SERVER_PID" | tee "$WORK/tls.txt" || prc=$?
    [ "$prc" -ne 124 ] || log "python_client.py over TLS TIMED OUT after ${TIMEOUT}s"
    stop_server tls || prc=1
    phase_result "$prc"
else
    log "FAIL  TLS phase: openssl not found (apt-get install openssl)"
    rc=1
fi

# Each python check prints PASS, FAIL or SKIP (SKIPs after an essential failure count as failed).
passed=$(( $(cat "$WORK"/config.txt "$WORK"/demo.txt "$WORK"/tls.txt 2>/dev/null | grep -c '^PASS ' || true) + SERVER_EXIT_PASSED ))
failed=$(cat "$WORK"/config.txt "$WORK"/demo.txt "$WORK"/tls.txt 2>/dev/null | grep -Ec '^(FAIL |SKIP .*essential)' || true)
failed=$(( failed + 3 - SERVER_EXIT_PASSED ))
[ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
log "finished in $((SECONDS - START))s"
echo "hub: $passed passed, $failed failed"
exit "$rc"
