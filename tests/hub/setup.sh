#!/usr/bin/env bash
# Installs the hub test's Python peer: tests/hub/.venv with the pinned
# requirements.txt (websockets). Idempotent.
#
# Env: HUB_PYTHON (default: python3), HUB_SETUP_FORCE=1 rebuilds the venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SETUP_NAME=hub/setup.sh
# shellcheck source-path=SCRIPTDIR source=../lib/setup.sh
. "$HERE/../lib/setup.sh"
PY="${HUB_PYTHON:-python3}"

command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
setup_lock "$HERE" 600
python_venv "$HERE/.venv" "$HERE/requirements.txt" websockets "${HUB_SETUP_FORCE:-0}"
