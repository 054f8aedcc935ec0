#!/usr/bin/env bash
# Installs the hub test's Python peer: tests/hub/.venv with the pinned
# requirements.txt (websockets). Idempotent; same pattern as tests/interop/setup.sh.
#
# Env: HUB_PYTHON (default: python3), HUB_SETUP_FORCE=1 rebuilds the venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${HUB_PYTHON:-python3}"
START=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

die() {
    echo "hub/setup.sh: ERROR: $*" >&2
    exit 1
}

command -v "$PY" >/dev/null 2>&1 || die "$PY not found"

exec 9>"${TMPDIR:-/tmp}/volley-hub-setup-$(printf '%s' "$HERE" | cksum | cut -d' ' -f1).lock"
flock -w 600 9 || die "timed out waiting for another setup.sh to finish"

stamp="$({ cat "$HERE/requirements.txt"; "$PY" -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ "${HUB_SETUP_FORCE:-0}" != "1" ] && [ -f "$VENV/.volley-setup-stamp" ] &&
    [ "$(cat "$VENV/.volley-setup-stamp")" = "$stamp" ] &&
    "$VENV/bin/python" -c 'import websockets' >/dev/null 2>&1; then
    echo "hub setup: python venv up to date"
    exit 0
fi

LOG="$(mktemp "${TMPDIR:-/tmp}/volley-hub-setup.XXXXXX.log")"
run() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "hub/setup.sh: command failed: $*" >&2
        echo "---- last 60 lines of $LOG ----" >&2
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}
rm -rf "$VENV"
run timeout 300 "$PY" -m venv "$VENV"
run timeout 600 "$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"
"$VENV/bin/python" -c 'import websockets' || die "websockets does not import"
echo "$stamp" >"$VENV/.volley-setup-stamp"
rm -f "$LOG"
echo "hub setup: python venv with websockets $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)') ($((SECONDS - START))s)"
