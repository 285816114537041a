#!/usr/bin/env bash
# Install the MCP gateways that `scripts/bench.sh` (section `peers`) measures
# mcpwatch's gateway against. Benchmarks only: nothing in the test command needs them.
#
# Each peer gets its own venv under <repo>/.bench-deps/ (gitignored), installed by
# package name from PyPI, because their `mcp` requirements conflict:
#   .bench-deps/contextforge/  IBM ContextForge, PyPI mcp-contextforge-gateway (needs mcp<2;
#                              releases from 1.0.8 on need Python 3.12, this machine has 3.11)
#   .bench-deps/mcp-proxy/     mcp-proxy (needs mcp<2): a stdio server behind streamable HTTP
#   .bench-deps/fastmcp/       fastmcp (needs mcp>=2.3): `from fastmcp.server import create_proxy`
#
# Idempotent (a stamp file per venv records what was asked for); BENCH_DEPS_FORCE=1
# reinstalls. Prints the installed versions last, one line per peer.
set -euo pipefail

CONTEXTFORGE_VERSION="1.0.7.post20260921"
MCP_PROXY_VERSION="0.13.0"
FASTMCP_VERSION="4.1.6"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.bench-deps"
FORCE="${BENCH_DEPS_FORCE:-0}"
PYTHON="${BENCH_PEERS_PYTHON:-python3}"

log() { printf '[bench-peers] %s\n' "$*" >&2; }
die() { printf '[bench-peers] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$DEPS"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEPS/.lock"
    flock 9
fi

# install_peer NAME PACKAGE VERSION CHECK: a venv at .bench-deps/NAME holding
# PACKAGE==VERSION, proven by running the Python snippet CHECK in it.
install_peer() {
    local name="$1" package="$2" version="$3" check="$4"
    local venv="$DEPS/$name" want="$2==$3"
    local stamp="$venv/.stamp"
    if [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
        log "$name: $want already installed"
        return 0
    fi
    log "$name: installing $want into ${venv#"$ROOT"/}"
    rm -f "$stamp"
    if [ -d "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$want" >&2
    local got
    got="$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$package'))")"
    [ "$got" = "$version" ] || die "$name: got $package $got, wanted $version"
    "$venv/bin/python" -c "$check" || die "$name: $package $got does not import"
    printf '%s\n' "$want" >"$stamp"
}

install_peer contextforge mcp-contextforge-gateway "$CONTEXTFORGE_VERSION" \
    'import importlib.util as u; assert u.find_spec("mcpgateway.main") and u.find_spec("mcpgateway.translate")'
install_peer mcp-proxy mcp-proxy "$MCP_PROXY_VERSION" 'import mcp_proxy'
install_peer fastmcp fastmcp "$FASTMCP_VERSION" 'from fastmcp.server import create_proxy'

# The versions, as the benchmark prints them.
for peer in contextforge:mcp-contextforge-gateway mcp-proxy:mcp-proxy fastmcp:fastmcp; do
    name="${peer%%:*}" package="${peer#*:}"
    "$DEPS/$name/bin/python" -c "import importlib.metadata as m, sys; print(f'$package {m.version(\"$package\")} (mcp {m.version(\"mcp\")}, Python {sys.version.split()[0]})')"
done
