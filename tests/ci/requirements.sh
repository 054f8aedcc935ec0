#!/usr/bin/env bash
# Tests .ci/requirements (what .ci/run checks before building) without
# uninstalling anything: Python 2.7 hidden by PATH/PYENV_ROOT/HOME, and fake
# old `node` and `rustc` first on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}

# PATH without pyenv's directories (its shims and bin).
plain_path="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v pyenv | paste -sd: -)"

# 1. No Python 2.7: exit 0 (CI goes on), nothing on stdout, a clear note on stderr.
rc=0
# (rustup's proxies find their toolchain through RUSTUP_HOME, not HOME.)
out="$(env -u AUTOBAHN_PYTHON27 PATH="$plain_path" HOME="$TMP/home" PYENV_ROOT="$TMP/no-pyenv" \
    RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
    timeout 60 "$ROOT/.ci/requirements" 2>"$TMP/err")" || rc=$?
err="$(cat "$TMP/err")"
check "python 2.7 absent: exit 0" "$([ "$rc" -eq 0 ]; echo $?)" "exit $rc; $err"
check "python 2.7 absent: no interpreter printed" "$([ -z "$out" ]; echo $?)" "stdout: $out"
check "python 2.7 absent: says Autobahn is skipped" "$(grep -q 'will be SKIPPED' <<<"$err"; echo $?)" "$err"
check "python 2.7 absent: names where it looked" "$(grep -q "$TMP/no-pyenv/versions/2.7.18" <<<"$err"; echo $?)" "$err"
check "python 2.7 absent: gives the install command" "$(grep -q 'pyenv install 2.7.18' <<<"$err"; echo $?)" "$err"

# 2. Python 2.7 present (this machine has it when tests/autobahn/python27 finds it):
#    its path is printed, so .ci/run runs Autobahn.
if py27="$("$ROOT/tests/autobahn/python27")"; then
    out="$(timeout 60 "$ROOT/.ci/requirements" 2>/dev/null)"
    check "python 2.7 present: printed for Autobahn" "$([ "$out" = "$py27" ]; echo $?)" "got '$out', want '$py27'"
else
    echo "note: no Python 2.7 here; the present case is not checked"
fi

# 3. Node older than 20, Rust older than 1.88 (volley-hub's rust-version): exit 1 with the install command.
mkdir -p "$TMP/old"
printf '#!/bin/sh\necho v18.19.0\n' >"$TMP/old/node"
printf '#!/bin/sh\necho "rustc 1.80.1 (3f5fd8dd4 2024-08-06)"\n' >"$TMP/old/rustc"
chmod +x "$TMP/old/node" "$TMP/old/rustc"
rc=0
PATH="$TMP/old:$PATH" timeout 60 "$ROOT/.ci/requirements" >/dev/null 2>"$TMP/err" || rc=$?
err="$(cat "$TMP/err")"
check "old node and rust: exit 1" "$([ "$rc" -eq 1 ]; echo $?)" "exit $rc"
check "old node: named, with the install command" \
    "$(grep -q 'Node 18.19.0 is older than 20' <<<"$err" && grep -q 'apt-get install -y nodejs' <<<"$err"; echo $?)" "$err"
check "old rust: named, with the install command" \
    "$(grep -q 'Rust 1.80.1 is older than 1.88' <<<"$err" && grep -q 'rustup' <<<"$err"; echo $?)" "$err"

# 4. This machine: Rust and Node are new enough.
rc=0
timeout 60 "$ROOT/.ci/requirements" >/dev/null 2>"$TMP/err" || rc=$?
check "this machine: Rust >= 1.88 and Node >= 20" "$([ "$rc" -eq 0 ]; echo $?)" "$(cat "$TMP/err")"

[ "$fails" -eq 0 ] || { echo "tests/ci/requirements.sh: $fails check(s) failed"; exit 1; }
echo "tests/ci/requirements.sh: all checks passed"
