#!/usr/bin/env bash
# Install the external MCP servers that mcpwatch's integration tests talk to.
#
# Everything goes into <repo>/.test-deps/ (gitignored):
#   .test-deps/node/  npm project with @modelcontextprotocol/server-everything
#                     entry point: node_modules/@modelcontextprotocol/server-everything/dist/index.js
#   .test-deps/venv/  Python venv with mcp (PyPI), used by tests/servers/bad_server.py,
#                     and schemathesis (PyPI), run by tests/hostile.rs against the agent
#   .test-deps/venv-mcp1/  second Python venv with mcp 1.x, langchain-mcp-adapters,
#                     langgraph and langchain-core: the clients that require mcp<2
#                     (tests/gateway_clients/py1_client.py, langgraph_threads.py)
#   .test-deps/node-sdk/   npm project with @modelcontextprotocol/sdk, the TypeScript
#                     client (tests/gateway_clients/ts_client.mjs; runs on Node 20)
#
# Idempotent: each step is skipped when its stamp file records the wanted version
# and the result is still there. Re-run with TEST_DEPS_FORCE=1 to reinstall.
set -euo pipefail

EVERYTHING_PKG="@modelcontextprotocol/server-everything"
EVERYTHING_VERSION="2026.8.31"
MCP_PY_VERSION="2.3.0"
SCHEMATHESIS_VERSION="4.32.5"
# The second venv: langchain-mcp-adapters 0.3.2 requires mcp>=1.24,<2, so it gets the
# newest mcp 1.x and the LangGraph / LangChain versions that resolved with it on
# Python 3.11 (2026-11-30).
MCP1_PY_VERSION="1.30.0"
LC_MCP_ADAPTERS_VERSION="0.3.2"
LANGGRAPH_VERSION="1.2.24"
LANGCHAIN_CORE_VERSION="1.8.3"
TS_SDK_PKG="@modelcontextprotocol/sdk"
TS_SDK_VERSION="1.32.2"

# Debian packages the test suite needs. Add names here (e.g. "jq"); they are
# installed with apt-get only when missing.
# prometheus: promtool checks the /metrics exposition (and, later, alert rules).
# haproxy, prometheus-alertmanager: tests/scaleout.rs (replicas behind a real load
# balancer, alerts delivered by a real Alertmanager).
APT_PACKAGES=(prometheus haproxy prometheus-alertmanager)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.test-deps"
FORCE="${TEST_DEPS_FORCE:-0}"

log() { printf '[test-deps] %s\n' "$*" >&2; }
die() { printf '[test-deps] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$DEPS"

# Serialize concurrent runs (e.g. two terminals running scripts/test.sh).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEPS/.lock"
    flock 9
fi

# --- Debian packages ---------------------------------------------------------
# The one place for apt packages. Installs only what is missing; runs
# `apt-get update` at most once, and only when something must be installed.
install_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; please install: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; please install: ${missing[*]}"
        sudo=(sudo)
    fi
    log "apt: installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_wanted=("${APT_PACKAGES[@]}")
# Toolchain fallbacks: the CI machine has node/npm and python3 with venv, so
# these are normally not needed.
command -v node >/dev/null 2>&1 || apt_wanted+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_wanted+=(npm)
command -v python3 >/dev/null 2>&1 || apt_wanted+=(python3 python3-venv)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_wanted+=(python3-venv)
fi
if [ "${#apt_wanted[@]}" -gt 0 ]; then
    install_apt_packages "${apt_wanted[@]}"
else
    log "apt: nothing needed"
fi

# --- Node: @modelcontextprotocol/server-everything ---------------------------
install_node() {
    local dir="$DEPS/node"
    local stamp="$dir/.stamp"
    local entry="$dir/node_modules/$EVERYTHING_PKG/dist/index.js"
    local want="$EVERYTHING_PKG@$EVERYTHING_VERSION"

    if [ "$FORCE" != 1 ] && [ -f "$entry" ] && [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$want" ]; then
        log "node: $(sed -n 2p "$stamp") already installed"
        return 0
    fi

    log "node: installing $want into ${dir#"$ROOT"/}"
    rm -f "$stamp"
    mkdir -p "$dir"
    if [ ! -f "$dir/package.json" ]; then
        (cd "$dir" && npm init -y >/dev/null)
    fi
    local npm_flags=(--no-audit --no-fund --no-progress --loglevel=error)
    if ! (cd "$dir" && npm install "${npm_flags[@]}" "$want" >&2); then
        log "node: pinned $want refused; falling back to $EVERYTHING_PKG@latest"
        (cd "$dir" && npm install "${npm_flags[@]}" "$EVERYTHING_PKG@latest" >&2)
    fi
    [ -f "$entry" ] || die "node: $entry missing after npm install"

    local got
    got="$(node -p "require('$dir/node_modules/$EVERYTHING_PKG/package.json').version")"
    [ "$got" = "$EVERYTHING_VERSION" ] || log "node: WARNING: got $EVERYTHING_PKG $got, wanted $EVERYTHING_VERSION"
    # line 1: what was asked for (the skip key); line 2: what was installed
    printf '%s\n%s\n' "$want" "$EVERYTHING_PKG@$got" >"$stamp"
    log "node: installed $EVERYTHING_PKG@$got"
}

# --- Python: mcp in a venv -----------------------------------------------------
install_venv() {
    local venv="$DEPS/venv"
    local stamp="$venv/.stamp"
    # mcp: the misbehaving test servers; pyyaml: tests read the shipped YAML (alerts, deploy);
    # schemathesis: property-based checks of the agent's API against its OpenAPI document.
    local want="mcp==$MCP_PY_VERSION pyyaml==6.0.3 schemathesis==$SCHEMATHESIS_VERSION"

    if [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' >/dev/null 2>&1; then
        log "venv: $want already installed"
        return 0
    fi

    log "venv: installing $want into ${venv#"$ROOT"/}"
    rm -f "$stamp"
    # Recreate a venv whose interpreter no longer runs (e.g. python3 moved).
    if [ -d "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    # shellcheck disable=SC2086 # $want is a list of requirements
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $want

    local got
    got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
    [ "$got" = "$MCP_PY_VERSION" ] || die "venv: got mcp $got, wanted $MCP_PY_VERSION"
    "$venv/bin/python" -c 'from mcp.server.mcpserver import MCPServer, Context' \
        || die "venv: mcp $got has no mcp.server.mcpserver.MCPServer"
    "$venv/bin/python" -c 'import yaml' || die "venv: pyyaml did not install"
    "$venv/bin/schemathesis" --version >/dev/null || die "venv: schemathesis did not install"
    # Written last: a failed check above leaves no stamp, so the next run retries.
    printf '%s\n' "$want" >"$stamp"
    log "venv: installed mcp $got, pyyaml and schemathesis $SCHEMATHESIS_VERSION"
}

# --- Python: the mcp 1.x clients (langchain-mcp-adapters, LangGraph) ------------
install_venv_mcp1() {
    local venv="$DEPS/venv-mcp1"
    local stamp="$venv/.stamp"
    local want="mcp==$MCP1_PY_VERSION langchain-mcp-adapters==$LC_MCP_ADAPTERS_VERSION"
    want="$want langgraph==$LANGGRAPH_VERSION langchain-core==$LANGCHAIN_CORE_VERSION"

    if [ "$FORCE" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' >/dev/null 2>&1; then
        log "venv-mcp1: $want already installed"
        return 0
    fi

    log "venv-mcp1: installing $want into ${venv#"$ROOT"/}"
    rm -f "$stamp"
    if [ -d "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    # shellcheck disable=SC2086 # $want is a list of requirements
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $want

    local got
    got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("mcp", "langchain-mcp-adapters", "langgraph", "langchain-core")))')"
    [ "$got" = "$want" ] || die "venv-mcp1: got $got, wanted $want"
    "$venv/bin/python" -c 'from mcp.client.streamable_http import streamablehttp_client' \
        || die "venv-mcp1: mcp has no streamablehttp_client"
    "$venv/bin/python" -c 'from langchain_mcp_adapters.client import MultiServerMCPClient; from langgraph.prebuilt import ToolNode' \
        || die "venv-mcp1: langchain-mcp-adapters or langgraph.prebuilt does not import"
    printf '%s\n' "$want" >"$stamp"
    log "venv-mcp1: installed $got"
}

# --- Node: the TypeScript SDK client ----------------------------------------------
install_node_sdk() {
    local dir="$DEPS/node-sdk"
    local stamp="$dir/.stamp"
    local want="$TS_SDK_PKG@$TS_SDK_VERSION"
    local pkg_json="$dir/node_modules/$TS_SDK_PKG/package.json"

    if [ "$FORCE" != 1 ] && [ -f "$pkg_json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "node-sdk: $want already installed"
        return 0
    fi

    log "node-sdk: installing $want into ${dir#"$ROOT"/}"
    rm -f "$stamp"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || (cd "$dir" && npm init -y >/dev/null)
    (cd "$dir" && npm install --no-audit --no-fund --no-progress --loglevel=error --save-exact "$want" >&2)
    local got
    got="$(node -p "require('$pkg_json').version")"
    [ "$got" = "$TS_SDK_VERSION" ] || die "node-sdk: got $TS_SDK_PKG $got, wanted $TS_SDK_VERSION"
    (cd "$dir" && node --input-type=module -e "await import('$TS_SDK_PKG/client/streamableHttp.js')") \
        || die "node-sdk: $want does not load on node $(node --version)"
    printf '%s\n' "$want" >"$stamp"
    log "node-sdk: installed $want (node $(node --version))"
}

install_node
install_venv
install_venv_mcp1
install_node_sdk
log "ready: .test-deps/node (server-everything), .test-deps/venv (mcp $MCP_PY_VERSION, schemathesis $SCHEMATHESIS_VERSION), .test-deps/venv-mcp1 (mcp $MCP1_PY_VERSION, langchain-mcp-adapters $LC_MCP_ADAPTERS_VERSION, langgraph $LANGGRAPH_VERSION, langchain-core $LANGCHAIN_CORE_VERSION), .test-deps/node-sdk ($TS_SDK_PKG@$TS_SDK_VERSION)"
