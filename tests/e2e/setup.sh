#!/usr/bin/env bash
# Installs what tests/e2e needs: Debian's Chromium (via apt, only when
# missing) and the npm packages pinned in tests/e2e/package-lock.json
# (playwright-core, which downloads no browser, and ws), as
# tests/browser/setup.sh does for its own folder.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/../browser/setup.sh" "$HERE"
