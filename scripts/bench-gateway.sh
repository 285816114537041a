#!/usr/bin/env bash
# The gateway's targets (issue 13), measured with one client, rmcp's streamable
# HTTP client (examples/raw_rmcp.rs), in one run (BENCHMARKS.md, "Gateway"):
#
#   1. persistent session, alternating rounds: p50 through the gateway
#      (/mcp/demo, the builtin demo behind it) vs the same client directly
#      against `mcpwatch demo-server --http`; the agent's /v1 API
#      (`mcpwatch bench --mode agent`) in the same rounds, for reference;
#   2. session per call (initialize, tools/call, DELETE) against server-everything
#      over stdio: through the gateway with a named scope (/scopes/bench/...)
#      vs opening a stdio session per call directly;
#   3. with valgrind: instructions per call in the agent process (all threads),
#      gateway vs /v1: (Ir after N2 calls - Ir after N1 calls) / (N2 - N1),
#      from two agent runs each, so start-up and shutdown cancel out.
#
# Usage: scripts/bench-gateway.sh [ROUNDS] [CALLS]     (default 5 2000)
# ONLY=latency|per-call|callgrind runs one part. Needs a release build (built
# here), .test-deps (scripts/install-test-deps.sh), and valgrind for part 3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-5}"
CALLS="${2:-2000}"
ONLY="${ONLY:-all}"
EVERYTHING="$ROOT/.test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[[ -f "$EVERYTHING" ]] || { echo "run scripts/install-test-deps.sh first" >&2; exit 1; }

cargo build --release --quiet --bin mcpwatch --example raw_rmcp
TARGET="${CARGO_TARGET_DIR:-target}/release"
MCPWATCH="$TARGET/mcpwatch"
RAW="$TARGET/examples/raw_rmcp"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
p50() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["p50_us"])'; }
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

agent_config() { # PORT ADMIN
    cat <<EOF
[agent]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
[servers.demo]
transport = "builtin"
[servers.everything]
transport = "stdio"
command = "node"
args = ["$EVERYTHING", "stdio"]
EOF
}

start_agent() { # PORT ADMIN [wrapper...]: runs `serve` (under the wrapper, if any)
    local port="$1" admin="$2"; shift 2
    agent_config "$port" "$admin" > "$WORK/agent-$port.toml"
    "$@" "$MCPWATCH" serve --config "$WORK/agent-$port.toml" >"$WORK/agent-$port.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    wait_port "$port"
}

echo "# mcpwatch $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%FT%TZ)"

if [[ "$ONLY" == all || "$ONLY" == latency ]]; then
    DEMO_PORT="$(free_port)"
    "$MCPWATCH" demo-server --http "127.0.0.1:$DEMO_PORT" >/dev/null 2>&1 &
    PIDS+=("$!")
    PORT="$(free_port)"; ADMIN="$(free_port)"
    start_agent "$PORT" "$ADMIN"
    wait_port "$DEMO_PORT"
    direct=(); gateway=(); api=()
    for round in $(seq 1 "$ROUNDS"); do
        d="$("$RAW" --tool echo --args '{"message":"hi"}' --calls "$CALLS" --http "http://127.0.0.1:$DEMO_PORT/mcp" | p50)"
        g="$("$RAW" --tool echo --args '{"message":"hi"}' --calls "$CALLS" --http "http://127.0.0.1:$PORT/mcp/demo" | p50)"
        a="$("$MCPWATCH" bench --mode agent --agent "http://127.0.0.1:$PORT" --server demo --tool echo --args '{"message":"hi"}' --calls "$CALLS" --json | p50)"
        direct+=("$d"); gateway+=("$g"); api+=("$a")
        echo "round $round: p50 direct $d us, gateway $g us, /v1 $a us, gateway/direct $(python3 -c "print(round($g/$d, 3))")"
    done
    echo "persistent session p50 (median of $ROUNDS rounds, $CALLS calls each): direct $(median "${direct[@]}") us, gateway $(median "${gateway[@]}") us, /v1 $(median "${api[@]}") us"
    ratios=(); for i in "${!direct[@]}"; do ratios+=("$(python3 -c "print(${gateway[$i]}/${direct[$i]})")"); done
    echo "gateway / direct, median of paired rounds: $(median "${ratios[@]}")"
fi

if [[ "$ONLY" == all || "$ONLY" == per-call ]]; then
    PORT="$(free_port)"; ADMIN="$(free_port)"
    start_agent "$PORT" "$ADMIN"
    g="$("$RAW" --session-per-call --tool echo --args '{"message":"hi"}' --calls 200 --http "http://127.0.0.1:$PORT/scopes/bench/mcp/everything" | p50)"
    d="$("$RAW" --session-per-call --tool echo --args '{"message":"hi"}' --calls 10 -- node "$EVERYTHING" stdio | p50)"
    echo "session per call p50, server-everything over stdio: gateway with a named scope $g us (200 calls), direct stdio $d us (10 calls); direct / gateway $(python3 -c "print(round($d/$g, 1))")x"
fi

if [[ "$ONLY" == all || "$ONLY" == callgrind ]]; then
    command -v valgrind >/dev/null || { echo "valgrind is needed for the instruction counts" >&2; exit 1; }
    N1=300; N2=2300
    # agent_instructions CALLS KIND: total Ir of one agent run serving CALLS calls.
    agent_instructions() {
        local calls="$1" kind="$2" port admin out="$WORK/cg.$2.$1"
        port="$(free_port)"; admin="$(free_port)"
        start_agent "$port" "$admin" valgrind --tool=callgrind --callgrind-out-file="$out"
        case "$kind" in
            gateway) "$RAW" --tool echo --args '{"message":"hi"}' --calls "$calls" --http "http://127.0.0.1:$port/scopes/cg/mcp/demo" >/dev/null ;;
            v1) "$MCPWATCH" bench --mode agent --agent "http://127.0.0.1:$port" --server demo --tool echo --args '{"message":"hi"}' --calls "$calls" >/dev/null ;;
        esac
        kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
        awk '/^(summary|totals):/ {print $2; exit}' "$out"
    }
    for kind in gateway v1; do
        a="$(agent_instructions "$N1" "$kind")"; b="$(agent_instructions "$N2" "$kind")"
        per_call=$(( (b - a) / (N2 - N1) ))
        eval "IR_$kind=$per_call"
        echo "agent instructions per $kind call: $per_call"
    done
    echo "gateway / v1 instructions per call: $(python3 -c "print(round($IR_gateway/$IR_v1, 3))")"
fi
