#!/usr/bin/env bash
# Installs what tests/e2e needs: Debian's Chromium (/usr/bin/chromium, via
# apt, only when missing) and the npm packages pinned in package-lock.json
# (`npm ci`: playwright-core, which downloads no browser).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"

die() {
    echo "e2e/setup.sh: ERROR: $*" >&2
    exit 1
}

command -v node >/dev/null || die "node not found (need Node.js >= 20)"
command -v npm >/dev/null || die "npm not found"

if [ ! -x "$CHROMIUM" ]; then
    echo "e2e/setup.sh: installing chromium (apt)"
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
echo "e2e/setup.sh: ok ($("$CHROMIUM" --version 2>/dev/null | head -1), playwright-core $(node -p "require('./node_modules/playwright-core/package.json').version"))"
