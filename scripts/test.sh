#!/usr/bin/env bash
# The project's test command (the README's): test deps, format check, clippy, nextest.
# Extra arguments go to `cargo nextest run`, e.g. `scripts/test.sh -E 'test(pool)'`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> %s\n' "$*" >&2; }

step "scripts/install-test-deps.sh"
scripts/install-test-deps.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo nextest run --profile ci $*"
cargo nextest run --profile ci "$@"
