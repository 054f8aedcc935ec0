#!/usr/bin/env bash
# Installs the interop peers' dependencies. Idempotent.
#   - Python: tests/interop/.venv with requirements.txt (websockets)
#   - Node:   `npm ci` in tests/interop (ws, from the committed package-lock.json)
#
# Env: INTEROP_PYTHON (default: python3), INTEROP_SETUP_FORCE=1 rebuilds both.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${INTEROP_PYTHON:-python3}"
START=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

die() {
    echo "interop/setup.sh: ERROR: $*" >&2
    exit 1
}

command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
command -v node >/dev/null 2>&1 || die "node not found (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"

exec 9>"${TMPDIR:-/tmp}/volley-interop-setup-$(printf '%s' "$HERE" | cksum | cut -d' ' -f1).lock"
flock -w 600 9 || die "timed out waiting for another setup.sh to finish"

LOG="$(mktemp "${TMPDIR:-/tmp}/volley-interop-setup.XXXXXX.log")"
run() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "interop/setup.sh: command failed: $*" >&2
        echo "---- last 60 lines of $LOG ----" >&2
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}

# ---- Python venv --------------------------------------------------------------
py_stamp="$({ cat "$HERE/requirements.txt"; "$PY" -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ "${INTEROP_SETUP_FORCE:-0}" != "1" ] && [ -f "$VENV/.volley-setup-stamp" ] &&
    [ "$(cat "$VENV/.volley-setup-stamp")" = "$py_stamp" ] &&
    "$VENV/bin/python" -c 'import websockets' >/dev/null 2>&1; then
    echo "interop setup: python venv up to date"
else
    t=$SECONDS
    rm -rf "$VENV"
    run timeout 300 "$PY" -m venv "$VENV"
    run timeout 600 "$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"
    "$VENV/bin/python" -c 'import websockets' || die "websockets does not import"
    echo "$py_stamp" >"$VENV/.volley-setup-stamp"
    echo "interop setup: python venv with websockets $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)') ($((SECONDS - t))s)"
fi

# ---- Node modules -------------------------------------------------------------
node_stamp="$({ cat "$HERE/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
if [ "${INTEROP_SETUP_FORCE:-0}" != "1" ] && [ -f "$HERE/node_modules/.volley-setup-stamp" ] &&
    [ "$(cat "$HERE/node_modules/.volley-setup-stamp")" = "$node_stamp" ]; then
    echo "interop setup: node_modules up to date"
else
    t=$SECONDS
    (cd "$HERE" && run timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    (cd "$HERE" && node -e "import('ws').then(() => 0)") || die "ws does not import"
    echo "$node_stamp" >"$HERE/node_modules/.volley-setup-stamp"
    echo "interop setup: npm ci done, ws $(cd "$HERE" && node -p "require('ws/package.json').version") ($((SECONDS - t))s)"
fi

rm -f "$LOG"
echo "interop setup: done ($((SECONDS - START))s)"
