#!/usr/bin/env bash
# Installs the interop peers' dependencies. Idempotent.
#   - Python: tests/interop/.venv with requirements.txt (websockets)
#   - Node:   `npm ci` in tests/interop (ws, from the committed package-lock.json)
#
# Env: INTEROP_PYTHON (default: python3), INTEROP_SETUP_FORCE=1 rebuilds both.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SETUP_NAME=interop/setup.sh
# shellcheck source-path=SCRIPTDIR source=../lib/setup.sh
. "$HERE/../lib/setup.sh"
PY="${INTEROP_PYTHON:-python3}"
START=$SECONDS

command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
command -v node >/dev/null 2>&1 || die "node not found (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"

setup_lock "$HERE" 600

# ---- Python venv --------------------------------------------------------------
python_venv "$HERE/.venv" "$HERE/requirements.txt" websockets "${INTEROP_SETUP_FORCE:-0}"

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

echo "interop setup: done ($((SECONDS - START))s)"
