#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit
# (.ci/run installs it). Vulnerabilities, and also unmaintained, unsound or
# yanked crates, fail the check. When cargo-audit is missing or its database
# cannot be fetched, the check fails and says that advisories were NOT
# checked: an unchecked lock file is never reported as a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! cargo audit --version >/dev/null 2>&1; then
    echo "advisories: NOT CHECKED: cargo-audit is not installed (cargo install --locked cargo-audit)" >&2
    exit 2
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
rc=0
cargo audit --deny warnings 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] && grep -qiE "(fetch|clone|open).*advisory|advisory.*(fetch|clone|database)|failed to (prepare|fetch)|network" "$log" \
    && ! grep -qE "^(Crate|ID): " "$log"; then
    echo "advisories: NOT CHECKED: the advisory database (github.com/rustsec/advisory-db) could not be fetched from this network" >&2
    exit 3
fi
exit "$rc"
