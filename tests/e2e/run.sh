#!/usr/bin/env bash
# End-to-end test of `volley serve` in demo mode with headless Chromium:
# two pages chat, see each other in presence, one is disconnected through the
# HTTP API and recovers every message published while it was away (none
# twice), the ticker chart moves, the admin page shows the hub's stats.
# Screenshots go to the folder it prints (E2E_SCREENSHOTS, default
# target/e2e-screenshots). Ends with "N passed, M failed".
#
# Env: E2E_SKIP_SETUP=1 skips setup.sh; VOLLEY_BIN picks the binary (default
# target/release/volley); CHROMIUM_BIN (default /usr/bin/chromium);
# E2E_TIMEOUT overall limit in seconds (default 120).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "${E2E_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi

cd "$HERE"
exec node demo.mjs "$@"
