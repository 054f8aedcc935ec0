#!/usr/bin/env bash
# The SDK's checks, for CI: npm ci, type check (sources and tests), the
# staleness check of the committed build (crates/volley-hub/assets/volley.js
# must equal a fresh build of src/), the vitest suite, and the test of the
# packed tarball in a scratch project (scripts/test-package.mjs: tsc with ws,
# Node 22 and the DOM; Node import and require; an esbuild bundle; against
# `volley serve` when VOLLEY_BIN names the release binary).
# Ends with the line "volley-js: N passed, M failed" (both suites' checks).
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
vitest="$(node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
if (r.numTotalTests === 0) { console.error("no tests ran"); process.exit(1); }
console.log(`${r.numPassedTests} ${r.numFailedTests}`);
' "$REPORT")" || { rc=1; vitest="0 1"; }

echo "== packed tarball (npm pack, scratch project)"
PACKAGE_OUT="$(mktemp)"
trap 'rm -f "$REPORT" "$PACKAGE_OUT"' EXIT
node scripts/test-package.mjs | tee "$PACKAGE_OUT" || rc=1
package="$(sed -nE 's/^package: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$PACKAGE_OUT" | tail -1)"
[ -n "$package" ] || { echo "scripts/test-package.mjs printed no summary"; rc=1; package="0 1"; }

read -r vp vf <<<"$vitest"
read -r pp pf <<<"$package"
echo "volley-js: $((vp + pp)) passed, $((vf + pf)) failed (vitest $vp/$((vp + vf)), package $pp/$((pp + pf)))"
exit "$rc"
