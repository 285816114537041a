# shellcheck shell=bash
# The peer gateways of scripts/bench.sh's `peers` section, each started in front of
# one upstream, each serving streamable HTTP on 127.0.0.1. Sourced by scripts/bench.sh,
# which provides free_port, wait_port and the PIDS array (every process started here
# is added to it and stopped on exit). The venvs come from scripts/install-bench-peers.sh.
#
# Every start_* function prints the MCP URL of the started peer.
#
# Each ContextForge step is written down in benches/README.md ("ContextForge").

PEERS_DEPS="$ROOT/.bench-deps"

# start_mcp_proxy LOG CMD...: mcp-proxy serving the stdio server CMD at /mcp.
start_mcp_proxy() {
    local log="$1" port; shift
    port=$(free_port)
    "$PEERS_DEPS/mcp-proxy/bin/mcp-proxy" --host 127.0.0.1 --port "$port" -- "$@" >"$log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" >&2
    echo "http://127.0.0.1:$port/mcp"
}

# start_mcp_proxy_http LOG URL: mcp-proxy in front of a streamable-HTTP server. mcp-proxy
# serves only stdio servers, so its stdio command is mcp-proxy's own bridge from stdio
# to URL (`mcp-proxy --transport streamablehttp URL`): two mcp-proxy processes.
start_mcp_proxy_http() {
    start_mcp_proxy "$1" "$PEERS_DEPS/mcp-proxy/bin/mcp-proxy" --transport streamablehttp "$2"
}

# start_fastmcp LOG (--url URL | -- CMD...): fastmcp's create_proxy (benches/fastmcp_proxy.py).
start_fastmcp() {
    local log="$1" port; shift
    port=$(free_port)
    "$PEERS_DEPS/fastmcp/bin/python" "$ROOT/benches/fastmcp_proxy.py" --port "$port" "$@" >"$log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" >&2
    echo "http://127.0.0.1:$port/mcp"
}

# start_contextforge_bridge LOG CMD...: ContextForge's own stdio bridge
# (`python -m mcpgateway.translate --stdio CMD --expose-streamable-http`), which
# ContextForge then registers like any streamable-HTTP server. Needs contextforge_env.
start_contextforge_bridge() {
    local log="$1" port; shift
    port=$(free_port)
    (cd "$CF_DIR" && exec "$PEERS_DEPS/contextforge/bin/python" -m mcpgateway.translate \
        --stdio "$*" --expose-streamable-http --host 127.0.0.1 --port "$port" \
        --logLevel error >"$log" 2>&1) &
    PIDS+=($!)
    wait_port "$port" >&2
    echo "http://127.0.0.1:$port/mcp"
}

# contextforge_env DIR: the environment ContextForge needs (steps 1 and 2 of
# benches/README.md); DIR holds its SQLite database and is its working directory.
contextforge_env() {
    CF_DIR="$1"
    mkdir -p "$CF_DIR"
    # Step 1: secrets (it will not start without JWT_SECRET_KEY and AUTH_ENCRYPTION_SECRET).
    eval "$(cd "$CF_DIR" && "$PEERS_DEPS/contextforge/bin/python" -m mcpgateway.scripts.init_secrets --stdout 2>/dev/null \
        | grep -E '^(JWT_SECRET_KEY|AUTH_ENCRYPTION_SECRET|BASIC_AUTH_PASSWORD|PLATFORM_ADMIN_PASSWORD)=' \
        | sed 's/^/export /')"
    [[ -n ${JWT_SECRET_KEY:-} && -n ${AUTH_ENCRYPTION_SECRET:-} ]] \
        || { echo "ContextForge: init_secrets printed no secrets" >&2; return 1; }
    # Step 2: the minimum that serves an open MCP endpoint on loopback.
    export HOST=127.0.0.1 PLATFORM_ADMIN_EMAIL=admin@example.com \
        MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=true MCPGATEWAY_CATALOG_ENABLED=false \
        SSRF_ALLOW_LOCALHOST=true MCP_REQUIRE_AUTH=false RATE_LIMITING_ENABLED=false \
        LOG_LEVEL=ERROR DATABASE_URL="sqlite:///$CF_DIR/mcp.db"
    if [[ ${BENCH_CF_STATEFUL:-0} == 1 ]]; then export USE_STATEFUL_SESSIONS=true; fi
}

# start_contextforge LOG: steps 3 and 4: the gateway (one worker), then an admin token.
# Sets CF_API and CF_TOKEN.
start_contextforge() {
    local log="$1" port
    port=$(free_port)
    (cd "$CF_DIR" && exec "$PEERS_DEPS/contextforge/bin/mcpgateway" --host 127.0.0.1 --port "$port" >"$log" 2>&1) &
    PIDS+=($!)
    CF_API="http://127.0.0.1:$port"
    local _
    for _ in $(seq 1 240); do
        curl -sf "$CF_API/health" >/dev/null 2>&1 && break
        sleep 0.5
    done
    curl -sf "$CF_API/health" >/dev/null || { echo "ContextForge did not answer /health" >&2; return 1; }
    CF_TOKEN=$(cd "$CF_DIR" && "$PEERS_DEPS/contextforge/bin/python" -m mcpgateway.utils.create_jwt_token \
        --username admin@example.com --exp 600 --secret "$JWT_SECRET_KEY" 2>/dev/null | tail -n1)
    [[ -n $CF_TOKEN ]] || { echo "ContextForge: no token" >&2; return 1; }
}

# contextforge_front NAME URL: steps 5 to 7: registers URL as the upstream NAME, creates
# a virtual server with its tools, prints the server's MCP URL.
contextforge_front() {
    local name="$1" url="$2" gateway server
    gateway=$(curl -sf -X POST "$CF_API/gateways" -H "Authorization: Bearer $CF_TOKEN" \
        -H 'content-type: application/json' \
        -d "{\"name\":\"$name\",\"url\":\"$url\",\"transport\":\"STREAMABLEHTTP\",\"visibility\":\"public\"}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
        || { echo "ContextForge: registering $url failed" >&2; return 1; }
    server=$(curl -sf "$CF_API/tools?limit=0" -H "Authorization: Bearer $CF_TOKEN" | python3 -c '
import json, sys
tools = json.load(sys.stdin)
tools = tools if isinstance(tools, list) else tools.get("items", [])
ids = [t["id"] for t in tools if t.get("gatewayId") == sys.argv[1]]
print(json.dumps({"server": {"name": sys.argv[2], "associated_tools": ids, "visibility": "public"}}))
' "$gateway" "bench-$name" | curl -sf -X POST "$CF_API/servers" -H "Authorization: Bearer $CF_TOKEN" \
        -H 'content-type: application/json' -d @- \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
        || { echo "ContextForge: creating the server for $name failed" >&2; return 1; }
    echo "$CF_API/servers/$server/mcp"
}

# peer_versions: one line per peer, for the machine section.
peer_versions() {
    local peer name package
    for peer in contextforge:mcp-contextforge-gateway mcp-proxy:mcp-proxy fastmcp:fastmcp; do
        name="${peer%%:*}" package="${peer#*:}"
        "$PEERS_DEPS/$name/bin/python" -c "import importlib.metadata as m; print(f'$package {m.version(\"$package\")} (mcp {m.version(\"mcp\")})')"
    done
}
