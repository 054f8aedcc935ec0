#!/usr/bin/env bash
# Installs what a Chromium test needs: Debian's Chromium (/usr/bin/chromium,
# via apt, only when missing) and the npm packages pinned in the test
# folder's package-lock.json (`npm ci`). playwright-core downloads no browser.
#
#   tests/browser/setup.sh [FOLDER]   (default: tests/browser; tests/e2e uses it too)
set -euo pipefail

HERE="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")}" && pwd)"
NAME="$(basename "$HERE")/setup.sh"
CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"

die() {
    echo "$NAME: ERROR: $*" >&2
    exit 1
}

command -v node >/dev/null || die "node not found (need Node.js >= 20)"
command -v npm >/dev/null || die "npm not found"

if [ ! -x "$CHROMIUM" ]; then
    echo "$NAME: installing chromium (apt)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install chromium by hand"
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq chromium >/dev/null
    [ -x "$CHROMIUM" ] || die "chromium install did not produce $CHROMIUM"
fi

cd "$HERE"
npm ci --no-audit --no-fund --loglevel=error
echo "$NAME: ok ($("$CHROMIUM" --version 2>/dev/null | head -1), playwright-core $(node -p "require('./node_modules/playwright-core/package.json').version"))"
