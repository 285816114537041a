# shellcheck shell=bash
# The peer gateways of scripts/bench.sh's `peers` section, each started in front of
# one upstream, each serving streamable HTTP on 127.0.0.1. Sourced by scripts/bench.sh,
# which provides free_port and wait_port, and calls stop_peers on exit. The venvs come
# from scripts/install-bench-peers.sh.
#
# Every peer runs in a session of its own (setsid), its leader listed in PEER_GROUPS;
# stop_peers ends the leaders and everything under them (stdio servers, bridges). Every start_* function
# sets STARTED_URL to the MCP URL of the started peer; none is meant to run in a
# subshell (`$(start_...)` would lose the process group).
#
# Each ContextForge step is written down in benches/README.md ("ContextForge").

PEERS_DEPS="$ROOT/.bench-deps"
PEER_GROUPS=()
STARTED_URL=""

# spawn_peer DIR LOG CMD...: CMD in the background, in DIR, in a session of its own
# (so that a signal to the benchmark's process group does not reach it first).
spawn_peer() {
    local dir="$1" log="$2"; shift 2
    (cd "$dir" && exec setsid "$@" >"$log" 2>&1) &
    PEER_GROUPS+=($!)
}

# tree PID...: the PIDs and all their descendants (some peers start their stdio server
# in a session of its own, outside their process group).
tree() {
    local pid child
    for pid in "$@"; do
        echo "$pid"
        for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
    done
}

# stop_peers: SIGTERM to every process a peer started, SIGKILL after 5 s to what is left.
stop_peers() {
    local pids pid alive _
    [[ ${#PEER_GROUPS[@]} -gt 0 ]] || return 0
    mapfile -t pids < <(tree "${PEER_GROUPS[@]}")
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    PEER_GROUPS=()
}

# start_mcp_proxy LOG CMD...: mcp-proxy serving the stdio server CMD at /mcp.
start_mcp_proxy() {
    local log="$1" port; shift
    port=$(free_port)
    spawn_peer "$ROOT" "$log" "$PEERS_DEPS/mcp-proxy/bin/mcp-proxy" --host 127.0.0.1 --port "$port" -- "$@"
    wait_port "$port"
    STARTED_URL="http://127.0.0.1:$port/mcp"
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
    spawn_peer "$ROOT" "$log" "$PEERS_DEPS/fastmcp/bin/python" "$ROOT/benches/fastmcp_proxy.py" --port "$port" "$@"
    wait_port "$port"
    STARTED_URL="http://127.0.0.1:$port/mcp"
}

# start_contextforge_bridge LOG CMD...: ContextForge's own stdio bridge
# (`python -m mcpgateway.translate --stdio CMD --expose-streamable-http`), which
# ContextForge then registers like any streamable-HTTP server. Needs contextforge_env.
start_contextforge_bridge() {
    local log="$1" port; shift
    port=$(free_port)
    spawn_peer "$CF_DIR" "$log" "$PEERS_DEPS/contextforge/bin/python" -m mcpgateway.translate \
        --stdio "$*" --expose-streamable-http --host 127.0.0.1 --port "$port" --logLevel error
    wait_port "$port"
    STARTED_URL="http://127.0.0.1:$port/mcp"
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
    spawn_peer "$CF_DIR" "$log" "$PEERS_DEPS/contextforge/bin/mcpgateway" --host 127.0.0.1 --port "$port"
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
# a virtual server with its tools, sets STARTED_URL to the server's MCP URL.
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
    STARTED_URL="$CF_API/servers/$server/mcp"
}

# peer_versions: one line per peer, for the machine section.
peer_versions() {
    local peer name package
    for peer in contextforge:mcp-contextforge-gateway mcp-proxy:mcp-proxy fastmcp:fastmcp; do
        name="${peer%%:*}" package="${peer#*:}"
        "$PEERS_DEPS/$name/bin/python" -c "import importlib.metadata as m; print(f'$package {m.version(\"$package\")} (mcp {m.version(\"mcp\")})')"
    done
}
