#!/usr/bin/env bash
# Builds and lints the workspace against the newest compatible versions of its
# dependencies, as a user's fresh resolve would pick them: the tracked tree
# (with uncommitted edits) is copied to a scratch dir, `cargo update` runs
# there, then `cargo build` and `cargo clippy -D warnings`. The committed
# Cargo.lock is not touched. A deprecation or break in a new release shows
# up here before users see it.
#
#   NEWEST_DEPS_TARGET  target dir, kept between runs (default target/newest-deps)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/volley-newest-deps.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export CARGO_TARGET_DIR="${NEWEST_DEPS_TARGET:-$ROOT/target/newest-deps}"

(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null) |
    tar -xf - -C "$SCRATCH"
cd "$SCRATCH"
echo "newest-deps: cargo update in $SCRATCH"
cargo update 2>&1 | grep -E 'Updating|Adding|Removing' || echo "newest-deps: the lock file is already current"
echo "newest-deps: cargo build"
cargo build --workspace --all-targets
echo "newest-deps: cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "newest-deps: ok"
