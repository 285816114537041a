#!/usr/bin/env bash
# The Python client's checks (clients/python): ruff, mypy --strict, and the tests, which
# start the real agent (target/debug/mcpwatch). A venv in .test-deps/python-client holds
# the pinned versions of clients/python/requirements-test.txt; it is kept between runs and
# rebuilt when the pins change. The resources/prompts tests use server-everything from
# scripts/install-test-deps.sh (scripts/test.sh runs it first). Extra arguments go to
# pytest (e.g. `-k langgraph`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.test-deps/python-client"
PKG="$ROOT/clients/python"
PINS="$PKG/requirements-test.txt"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '==> %s\n' "$*" >&2; }

step "cargo build --bin mcpwatch"
cargo build --bin mcpwatch
export MCPWATCH_BIN="$ROOT/target/debug/mcpwatch"

want="$(cat "$PINS" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$PY" || "$(cat "$VENV/.pins" 2>/dev/null)" != "$want" ]]; then
    step "venv .test-deps/python-client from ${PINS#"$ROOT"/}"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # A complete freeze: nothing to resolve (the next step would add anything missing).
    "$PY" -m pip install --quiet --no-deps -r "$PINS"
    echo "$want" >"$VENV/.pins"
fi

step "pip install ./clients/python[langchain,langgraph,mcp2]"
# Rebuilt from the source every run; its extras must resolve within the pins.
"$PY" -m pip install --quiet --no-build-isolation -c "$PINS" "$PKG[langchain,langgraph,mcp2]"
"$PY" -m pip check >/dev/null

cd "$PKG"
step "ruff check + ruff format --check"
"$VENV/bin/ruff" check . ../../examples/python
"$VENV/bin/ruff" format --check . ../../examples/python

step "mypy --strict"
"$VENV/bin/mypy"

step "pytest clients/python/tests $*"
status=0
"$PY" -m pytest -q -p no:cacheprovider "$@" || status=$?
if [[ $status -eq 5 ]]; then
    # 5: no test ran. With a selection given that is an answer; for the whole suite
    # it means collection found nothing, which is a failure.
    if [[ $# -gt 0 ]]; then
        step "no Python test matched: $*"
        exit 0
    fi
    step "pytest collected no tests"
    exit 1
fi
exit "$status"
