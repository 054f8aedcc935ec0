#!/usr/bin/env bash
# End-to-end tests of `volley serve` (the release binary) with the SDK:
#   node.mjs  the SDK in Node 20 (ws) against the hub: recovery, a 4501 stop,
#             the SIGTERM drain (4001) of a hub with a short drain config;
#   demo.mjs  headless Chromium on the demo (/) and admin (/admin) pages: two
#             pages chat, see each other in presence, one is disconnected
#             through the HTTP API and recovers every message published while
#             it was away (none twice), the ticker chart moves, the admin page
#             shows the stats. Screenshots go to the folder it prints
#             (E2E_SCREENSHOTS, default target/e2e-screenshots);
#   cluster.mjs two pages on two nodes of scripts/cluster.sh (3 nodes on the
#             Redis engine, HAProxy) chat and see each other in presence;
#             page B's node is killed and B resumes on another node with
#             nothing lost;
#   h2.mjs    the demo over https (a self-signed certificate) in Chromium: its
#             WebSockets go over HTTP/2, as the hub's /metrics show
#             (volley_connections_by_transport{transport="websocket-h2"});
#   fallback.mjs the demo behind Debian's nginx (started on a free port with
#             its own config, stopped by PID) in Chromium: behind a proxy
#             that passes no Upgrade it falls back to SSE, behind one that
#             buffers to long-polling; both chat with a WebSocket page and
#             recover every message missed across an HTTP API disconnect.
# Each prints one line per check and "N passed, M failed"; the last line is
# the sum. Exit status 1 if any check failed.
#
# Env: E2E_SKIP_SETUP=1 skips setup.sh; VOLLEY_BIN picks the binary (default
# target/release/volley); CHROMIUM_BIN (default /usr/bin/chromium); NGINX_BIN
# (default /usr/sbin/nginx);
# E2E_TIMEOUT overall limit per script in seconds (default 120, 60, or 180 for fallback.mjs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "${E2E_SKIP_SETUP:-0}" != "1" ]; then
    "$HERE/setup.sh"
fi

cd "$HERE"
total_passed=0
total_failed=0
rc=0
for script in node.mjs demo.mjs cluster.mjs h2.mjs fallback.mjs; do
    echo "== tests/e2e/$script"
    out="$(mktemp)"
    node "$script" "$@" | tee "$out" || rc=1
    # "N passed, M failed", or "label: N passed, M failed" (Tally with a label).
    line="$(grep -E '^([A-Za-z0-9_-]+: )?[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || true)"
    line="${line#*: }"
    rm -f "$out"
    if [ -z "$line" ]; then
        echo "tests/e2e/$script printed no summary"
        total_failed=$((total_failed + 1))
        rc=1
        continue
    fi
    total_passed=$((total_passed + ${line%% passed*}))
    f="${line#*passed, }"
    total_failed=$((total_failed + ${f%% failed}))
done
echo "e2e: ${total_passed} passed, ${total_failed} failed"
[ "$total_failed" -eq 0 ] || rc=1
exit "$rc"
