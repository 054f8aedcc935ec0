#!/usr/bin/env bash
# Headless-Chromium interop test of volley's permessage-deflate.
# Env: BROWSER_SKIP_SETUP=1 skips setup.sh; VOLLEY_BIN picks the volley
# binary (default: target/release/volley at the repo root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "${BROWSER_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi

cd "$HERE"
exec node deflate.mjs "$@"
