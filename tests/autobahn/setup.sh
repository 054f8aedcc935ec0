#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (`wstest`, Python 2.7 only) into
# tests/autobahn/.venv. Idempotent: when the venv already matches
# requirements.txt it only re-checks `wstest --help` and returns.
#
# Needs CPython 2.7.18 from pyenv ("$(pyenv root)/versions/2.7.18"), or set
# AUTOBAHN_PYTHON27=/path/to/python2.7 (found by ./python27). Needs gcc (wsaccel and autobahn are
# built from source).
#
# Env: AUTOBAHN_SETUP_FORCE=1 rebuilds the venv from scratch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.volley-setup-stamp"
# Last virtualenv release that still runs on (and creates) Python 2.7 envs.
VIRTUALENV_VERSION="20.15.1"
START=$SECONDS

SETUP_NAME=autobahn/setup.sh
# shellcheck source-path=SCRIPTDIR source=../lib/setup.sh
. "$HERE/../lib/setup.sh"

# Python 2 tooling is noisy about its own end of life.
export PYTHONWARNINGS="ignore"
export PIP_NO_PYTHON_VERSION_WARNING=1

if ! PY27="$("$HERE/python27")"; then
    looked="$("$HERE/python27" -v 2>&1 >/dev/null || true)"
    die "Python 2.7.18 not found at $looked (install it with pyenv, or set AUTOBAHN_PYTHON27)"
fi
command -v gcc >/dev/null 2>&1 || die "gcc is required to build wsaccel/autobahn (apt-get install gcc)"

want_stamp="$(
    {
        cat "$REQ"
        echo "virtualenv=$VIRTUALENV_VERSION"
        echo "python=$PY27"
    } | sha256sum | cut -d' ' -f1
)"

wstest_ok() {
    [ -x "$VENV/bin/wstest" ] && timeout 60 "$VENV/bin/wstest" --help >/dev/null 2>&1
}

# Serialize concurrent setups (CI runs the two Autobahn roles in parallel).
setup_lock "$VENV" 900

if [ "${AUTOBAHN_SETUP_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "$want_stamp" ] && wstest_ok; then
    echo "autobahn setup: up to date ($VENV, $((SECONDS - START))s)"
    exit 0
fi

echo "autobahn setup: building $VENV (log: $LOG)"
rm -rf "$VENV"

t=$SECONDS
run timeout 300 "$PY27" -m pip install -q "virtualenv==$VIRTUALENV_VERSION"
run timeout 300 "$PY27" -m virtualenv -q "$VENV"
echo "autobahn setup: virtualenv ready ($((SECONDS - t))s)"

t=$SECONDS
run timeout 900 "$VENV/bin/pip" install -q -r "$REQ"
run timeout 120 "$VENV/bin/pip" check
echo "autobahn setup: packages installed ($((SECONDS - t))s)"

wstest_ok || {
    timeout 60 "$VENV/bin/wstest" --help || true
    die "wstest --help does not work"
}
version="$(timeout 60 "$VENV/bin/wstest" -a 2>/dev/null | tr '\n' ' ')"
echo "$want_stamp" >"$STAMP"
echo "autobahn setup: done: ${version}($((SECONDS - START))s)"
