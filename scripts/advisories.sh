#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit
# (.ci/run installs it). Vulnerabilities, and also unmaintained, unsound or
# yanked crates, fail the check (exit 1). A missing cargo-audit fails too
# (exit 2). When the advisory database cannot be fetched (exit 3) it says that
# advisories were NOT checked, and scripts/test-all.sh lists the step as NOT
# RUN with that reason: an unchecked lock file is never reported as a pass.
# `--reachable` only says (by its status) whether the database can be had.
set -uo pipefail
cd "$(dirname "$0")/.."
DB_URL="https://github.com/rustsec/advisory-db"
# A local copy of the database (cargo-audit's default place), or the remote
# answering within 20 s.
db_reachable() {
    [ -d "${CARGO_HOME:-$HOME/.cargo}/advisory-db/.git" ] ||
        timeout 20 git ls-remote --heads "$DB_URL" >/dev/null 2>&1
}
if [ "${1:-}" = "--reachable" ]; then
    db_reachable
    exit
fi
if ! db_reachable; then
    echo "advisories: NOT CHECKED: the advisory database ($DB_URL) cannot be fetched from this network" >&2
    exit 3
fi
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
