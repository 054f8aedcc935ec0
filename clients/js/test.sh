#!/usr/bin/env bash
# The SDK's checks, for CI: npm ci, type check (sources and tests), the
# staleness check of the committed build (crates/volley-hub/assets/volley.js
# must equal a fresh build of src/), and the vitest suite.
# Ends with the line "volley-js: N passed, M failed".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
export NO_COLOR=1 FORCE_COLOR=0

command -v node >/dev/null || { echo "clients/js/test.sh: node not found (need Node.js >= 20)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error

echo "== type check (tsc)"
npm run --silent typecheck

echo "== build staleness"
npm run --silent check-build

echo "== vitest"
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT
rc=0
npx vitest run --reporter=default --reporter=json --outputFile="$REPORT" || rc=$?
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log(`volley-js: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
if (r.numTotalTests === 0) { console.error("no tests ran"); process.exit(1); }
' "$REPORT" || rc=1
exit "$rc"
