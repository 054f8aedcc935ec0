# shellcheck shell=bash
# Sourced by the tests' setup.sh scripts (hub, interop, autobahn): what they
# share. Set SETUP_NAME (as in "hub/setup.sh") before sourcing.
#
#   die MESSAGE...                 print "<SETUP_NAME>: ERROR: ..." and exit 1
#   setup_lock KEY SECONDS         serialize concurrent setups of KEY (fd 9)
#   run COMMAND...                 run quietly into $LOG; on failure show its
#                                  tail and exit 1 (the log is kept then, and
#                                  removed when the script succeeds)
#   python_venv VENV REQUIREMENTS MODULE FORCE
#                                  (re)build a Python 3 venv ($PY) with the
#                                  pinned requirements unless its stamp
#                                  matches and MODULE imports; FORCE=1 always

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

die() {
    echo "$SETUP_NAME: ERROR: $*" >&2
    exit 1
}

setup_lock() { # KEY SECONDS
    exec 9>"${TMPDIR:-/tmp}/volley-${SETUP_NAME%%/*}-setup-$(printf '%s' "$1" | cksum | cut -d' ' -f1).lock"
    flock -w "$2" 9 || die "timed out waiting for another setup.sh to finish"
}

LOG="$(mktemp "${TMPDIR:-/tmp}/volley-${SETUP_NAME%%/*}-setup.XXXXXX.log")"
trap 'if [ $? -eq 0 ]; then rm -f "$LOG"; fi' EXIT
run() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "$SETUP_NAME: command failed: $*" >&2
        echo "---- last 60 lines of $LOG ----" >&2
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}

python_venv() { # VENV REQUIREMENTS MODULE FORCE
    local venv=$1 req=$2 module=$3 force=$4 label=${SETUP_NAME%%/*} stamp t
    stamp="$({ cat "$req"; "$PY" -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum | cut -d' ' -f1)"
    if [ "$force" != "1" ] && [ -f "$venv/.volley-setup-stamp" ] &&
        [ "$(cat "$venv/.volley-setup-stamp")" = "$stamp" ] &&
        "$venv/bin/python" -c "import $module" >/dev/null 2>&1; then
        echo "$label setup: python venv up to date"
        return
    fi
    t=$SECONDS
    rm -rf "$venv"
    run timeout 300 "$PY" -m venv "$venv"
    run timeout 600 "$venv/bin/python" -m pip install -q -r "$req"
    "$venv/bin/python" -c "import $module" || die "$module does not import"
    echo "$stamp" >"$venv/.volley-setup-stamp"
    echo "$label setup: python venv with $module $("$venv/bin/python" -c "import $module; print($module.__version__)") ($((SECONDS - t))s)"
}
