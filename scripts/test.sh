#!/usr/bin/env bash
# The project's test command (the README's): test deps, format check, clippy, nextest,
# then the documentation's examples (nextest does not run doctests) and the Python
# client's checks (scripts/test-python.sh); those two are skipped when a filter is
# given. Extra arguments go to `cargo nextest run`, e.g. `scripts/test.sh -E 'test(pool)'`.
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

if [[ $# -eq 0 ]]; then
    step "cargo test --doc"
    cargo test --doc

    step "scripts/test-python.sh"
    scripts/test-python.sh
fi
