#!/usr/bin/env bash
# Type-checks and lints the workspace against the newest compatible versions of its
# dependencies, as a user's fresh resolve would pick them: the tracked tree
# (with uncommitted edits) is copied to a scratch dir, `cargo update` runs
# there, then `cargo clippy --all-targets -D warnings` (which type-checks every
# target and runs the build scripts). The committed Cargo.lock is not touched.
# A deprecation or break in a new release shows up here before users see it.
# (No separate `cargo build`: linking a second copy of every test binary would
# cost gigabytes of disk for what the type-check already catches.)
#
#   NEWEST_DEPS_TARGET  target dir, kept between runs (default target/newest-deps;
#                       under CI=true, a scratch dir removed when the check ends)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/volley-newest-deps.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
if [ -n "${NEWEST_DEPS_TARGET:-}" ]; then
    export CARGO_TARGET_DIR="$NEWEST_DEPS_TARGET"
elif [ -n "${CI:-}" ]; then
    export CARGO_TARGET_DIR="$SCRATCH/target"
else
    export CARGO_TARGET_DIR="$ROOT/target/newest-deps"
fi

(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null) |
    tar -xf - -C "$SCRATCH"
cd "$SCRATCH"
echo "newest-deps: cargo update in $SCRATCH"
cargo update 2>&1 | grep -E 'Updating|Adding|Removing' || echo "newest-deps: the lock file is already current"
echo "newest-deps: cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "newest-deps: ok"
