#!/usr/bin/env bash
# Head-to-head benchmarks, all in one run on this machine (release build).
#
#   scripts/bench.sh [CALLS] [ROUNDS]   # default 2000 calls per row, 5 rounds
#
# Sections (servers x transports), each with the same clients calling `echo`
# sequentially:
#   stdio-everything  server-everything (Node) over stdio
#   http-everything   server-everything over streamable HTTP
#   stdio-demo        mcpwatch's demo server (`mcpwatch demo-server --stdio`)
#   http-demo         the demo server over streamable HTTP (`demo-server --http`)
# Clients:
#   raw-rmcp            examples/raw_rmcp.rs: rmcp used directly, one session
#   mcpwatch-pooled     `mcpwatch bench --mode pooled`, telemetry off
#   mcpwatch-telemetry  the same with OTLP + Sentry exporting to a live local sink
#   python-sdk          benches/python_sdk_client.py: the Python `mcp` SDK, one session
#   per-call-session    `mcpwatch bench --mode per-call-session` (fewer calls, once)
# and the agent section (`agent`): the library on the builtin demo server vs the
# same call through a running agent's HTTP API, plus throughput at concurrency 64.
# The peers section (`peers`, issue 14): one client, rmcp's streamable-HTTP client
# (`mcpwatch bench --mode mcp | mcp-per-call-session --url`), calling `echo` on two
# upstreams, server-everything over stdio and the demo server over streamable HTTP,
# directly (raw rmcp over stdio; the demo's own URL) and through the mcpwatch gateway
# (GATEWAY_PATHS), IBM ContextForge, mcp-proxy and fastmcp's proxy, each peer through
# its own stdio bridge for the stdio upstream. Per path and round: one session, sequential
# calls (p50, p99); a session per call (`X-Mcpwatch-Scope` sent, a named scope on
# mcpwatch); 32 calls in flight on one session (calls/s). After the rounds, "keeps state
# per scope" (benches/scope_state.py) on the demo over HTTP and over stdio. The peers'
# venvs come from scripts/install-bench-peers.sh; ContextForge's setup is in
# benches/README.md. Tables: benches/peers_summary.py; raw lines: target/bench/peers.jsonl.
#
# The persistent-session clients run in ROUNDS alternating rounds (the order
# rotates every round); the summary quotes the median of each client's per-round
# p50/p90/p99 and the ratios to raw rmcp. Every measured call's latency goes to
# target/bench/latencies/<section>__<client>__r<round>.txt, and
# benches/charts.py turns those into one SVG per section (CDF + tail).
#
# Environment:
#   BENCH_ONLY=stdio-demo,http-*   run only these sections (comma list of globs;
#                                  sections above plus `agent` and `peers`)
#   BENCH_CLIENTS=raw-rmcp,python-sdk  run only these clients (comma list of globs;
#                                  agent clients: library-pooled, agent-api, agent-api-c64)
#   BENCH_PERCALL_CALLS=N          calls of the per-call-session rows (default CALLS/10,
#                                  at least 20; CALLS/100, at least 5, for stdio-everything,
#                                  where each call starts a Node process)
#   BENCH_CHARTS_DIR=DIR           where the SVGs go (default benches/results)
#   BENCH_NO_BUILD=1               skip the dependency install and the cargo build
#   BENCH_ROW_TIMEOUT=SECONDS      kill a row that runs longer (default 600)
#   BENCH_CF_STATEFUL=1            peers: ContextForge with USE_STATEFUL_SESSIONS=true
#   (BENCH_CLIENTS also picks peers paths: direct, gateway, contextforge, mcp-proxy, fastmcp)
#
# Prints machine info (for BENCHMARKS.md) first, then Markdown tables; keeps the
# raw JSON lines in target/bench/results.jsonl and the tables in
# target/bench/summary.md. Only 127.0.0.1 is used; every process started here is
# stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CALLS="${1:-2000}"
ROUNDS="${2:-5}"
[[ $CALLS =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $CALLS -gt 0 && $ROUNDS -gt 0 ]] \
    || { echo "usage: scripts/bench.sh [CALLS] [ROUNDS]" >&2; exit 64; }
ONLY="${BENCH_ONLY:-*}"
CLIENTS_ONLY="${BENCH_CLIENTS:-*}"
CHARTS_DIR="${BENCH_CHARTS_DIR:-benches/results}"
ROW_TIMEOUT="${BENCH_ROW_TIMEOUT:-600}"
PERCALL_CALLS="${BENCH_PERCALL_CALLS:-$(( CALLS / 10 > 20 ? CALLS / 10 : 20 ))}"
PERCALL_SLOW_CALLS="${BENCH_PERCALL_CALLS:-$(( CALLS / 100 > 5 ? CALLS / 100 : 5 ))}"
OUT=target/bench
LAT="$OUT/latencies"
mkdir -p "$OUT"
rm -rf "$LAT"
mkdir -p "$LAT"
: > "$OUT/results.jsonl"
: > "$OUT/peers.jsonl"

# matches LIST VALUE: is VALUE matched by one of the comma-separated globs in LIST?
matches() {
    local pattern patterns
    IFS=, read -ra patterns <<< "$1"
    for pattern in "${patterns[@]}"; do
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        [[ $2 == $pattern ]] && return 0
    done
    return 1
}
want_section() { matches "$ONLY" "$1"; }
want_client() { matches "$CLIENTS_ONLY" "$1"; }
# shellcheck source=scripts/lib/peers.sh
source "$ROOT/scripts/lib/peers.sh"

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    scripts/install-test-deps.sh
    if want_section peers; then scripts/install-bench-peers.sh >&2; fi
    cargo build --release --bins --examples -q
fi
RELEASE="${CARGO_TARGET_DIR:-$ROOT/target}/release"
[[ $RELEASE == /* ]] || RELEASE="$ROOT/$RELEASE"
BIN="$RELEASE/mcpwatch"
RAW="$RELEASE/examples/raw_rmcp"
PY="$ROOT/.test-deps/venv/bin/python"
PYCLIENT="$ROOT/benches/python_sdk_client.py"
EVERYTHING="$ROOT/.test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
for f in "$BIN" "$RAW" "$PY" "$EVERYTHING"; do
    [[ -e $f ]] || { echo "missing $f (run without BENCH_NO_BUILD=1)" >&2; exit 1; }
done

PIDS=()
ROW_PID=""
cleanup() {
    local pids=("${PIDS[@]}") pid alive
    [[ -n $ROW_PID ]] && pids+=("$ROW_PID")
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
# The peers first: cleanup's `wait` waits for every background job, theirs too.
trap 'stop_peers; cleanup' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# --- machine and versions ------------------------------------------------------
RMCP_VERSION=$(awk '/^name = "rmcp"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
MCP_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))')
EVERYTHING_VERSION=$(node -p "require('$ROOT/.test-deps/node/node_modules/@modelcontextprotocol/server-everything/package.json').version")
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+local changes')"
{
    echo "## Machine and versions"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- cores (nproc): $(nproc); CPU: ${CPU_MODEL:-unknown}; memory: $MEM_GIB GiB; kernel: $(uname -sr)"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- mcpwatch $(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml) ($GIT_REV), release build; rmcp $RMCP_VERSION; $(rustc -V)"
    echo "- Node $(node -v); @modelcontextprotocol/server-everything $EVERYTHING_VERSION"
    echo "- $("$PY" -V 2>&1); Python mcp SDK $MCP_VERSION (anyio $("$PY" -c 'import importlib.metadata as m; print(m.version("anyio"))'))"
    echo "- calls per row: $CALLS, rounds: $ROUNDS; one session per call: $PERCALL_CALLS calls ($PERCALL_SLOW_CALLS for stdio-everything)"
    echo "- command: scripts/bench.sh $CALLS $ROUNDS${BENCH_ONLY:+ (BENCH_ONLY=$BENCH_ONLY)}${BENCH_CLIENTS:+ (BENCH_CLIENTS=$BENCH_CLIENTS)}"
    if want_section peers; then echo "- peers: $(peer_versions | paste -sd ';' | sed 's/;/; /g')"; fi
} | tee "$OUT/machine.md"

# --- servers and configs -------------------------------------------------------
ARGS='{"message":"hello"}'
# A sink that answers 200 to OTLP and Sentry posts (so "telemetry on" exports for real).
SINK_PORT=$(free_port)
python3 - "$SINK_PORT" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)
EVERYTHING_PORT=$(free_port)
PORT=$EVERYTHING_PORT node "$EVERYTHING" streamableHttp >/dev/null 2>&1 &
PIDS+=($!)
DEMO_PORT=$(free_port)
MCPWATCH_LOG__LEVEL=warn "$BIN" demo-server --http "127.0.0.1:$DEMO_PORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$SINK_PORT"; wait_port "$EVERYTHING_PORT"; wait_port "$DEMO_PORT"

SERVERS_TOML="
[servers.everything]
transport = \"stdio\"
command = \"node\"
args = [\"$EVERYTHING\", \"stdio\"]
[servers.everything_http]
transport = \"http\"
url = \"http://127.0.0.1:$EVERYTHING_PORT/mcp\"
[servers.demo_stdio]
transport = \"stdio\"
command = \"$BIN\"
args = [\"demo-server\", \"--stdio\"]
[servers.demo_http]
transport = \"http\"
url = \"http://127.0.0.1:$DEMO_PORT/mcp\"
[servers.demo]
transport = \"builtin\"
"
printf '%s' "$SERVERS_TOML" > "$OUT/stdio.toml"
printf '[telemetry.otlp]\nendpoint = "http://127.0.0.1:%s"\n[telemetry.sentry]\ndsn = "http://k@127.0.0.1:%s/1"\n%s' \
    "$SINK_PORT" "$SINK_PORT" "$SERVERS_TOML" > "$OUT/telemetry.toml"

# --- rows ------------------------------------------------------------------------
FAILED=()
# record_row FILE NAME FIELDS CMD...: runs CMD (bounded by BENCH_ROW_TIMEOUT) and
# appends {"row":NAME,FIELDS,"result":<CMD's last stdout line>} to FILE.
record_row() {
    local file="$1" name="$2" fields="$3" rc=0 line; shift 3
    timeout -k 10 "$ROW_TIMEOUT" "$@" > "$OUT/row.out" &
    ROW_PID=$!
    wait "$ROW_PID" || rc=$?
    ROW_PID=""
    line=$(tail -n1 "$OUT/row.out")
    if [[ $line == \{* ]]; then
        printf '{"row":"%s",%s,"result":%s}\n' "$name" "$fields" "$line" >> "$file"
        echo "$name: $line" >&2
    else
        echo "$name: FAILED (exit $rc)" >&2
        FAILED+=("$name")
    fi
}

# run_row SECTION CLIENT ROUND CMD...: runs CMD, records its JSON line in results.jsonl.
run_row() {
    local section="$1" client="$2" round="$3"; shift 3
    record_row "$OUT/results.jsonl" "$section $client${round:+ #$round}" \
        "\"section\":\"$section\",\"client\":\"$client\",\"round\":${round:-0}" "$@"
}

# row SECTION CLIENT ROUND CALLS: the command of one client against one section.
row() {
    local section="$1" client="$2" round="$3" calls="$4"
    local lat="$LAT/${section}__${client}__r${round:-1}.txt"
    local server stdio_cmd=() http_url="" config="$OUT/stdio.toml"
    case "$section" in
        stdio-everything) server=everything; stdio_cmd=(node "$EVERYTHING" stdio) ;;
        http-everything) server=everything_http; http_url="http://127.0.0.1:$EVERYTHING_PORT/mcp" ;;
        stdio-demo) server=demo_stdio; stdio_cmd=("$BIN" demo-server --stdio) ;;
        http-demo) server=demo_http; http_url="http://127.0.0.1:$DEMO_PORT/mcp" ;;
        *) echo "unknown section $section" >&2; return 1 ;;
    esac
    local target=()
    if [[ -n $http_url ]]; then target=(--http "$http_url"); else target=(-- "${stdio_cmd[@]}"); fi
    local common=(--tool echo --args "$ARGS" --calls "$calls" --latencies "$lat")
    case "$client" in
        raw-rmcp) run_row "$section" "$client" "$round" "$RAW" "${common[@]}" "${target[@]}" ;;
        python-sdk) run_row "$section" "$client" "$round" "$PY" "$PYCLIENT" "${common[@]}" "${target[@]}" ;;
        mcpwatch-pooled) run_row "$section" "$client" "$round" "$BIN" bench --config "$config" --server "$server" "${common[@]}" --json ;;
        mcpwatch-telemetry) run_row "$section" "$client" "$round" "$BIN" bench --config "$OUT/telemetry.toml" --server "$server" "${common[@]}" --json ;;
        per-call-session) run_row "$section" "$client" "$round" "$BIN" bench --config "$config" --server "$server" "${common[@]}" --mode per-call-session --json ;;
        *) echo "unknown client $client" >&2; return 1 ;;
    esac
}

PERSISTENT=(raw-rmcp mcpwatch-pooled mcpwatch-telemetry python-sdk)
for section in stdio-everything http-everything stdio-demo http-demo; do
    want_section "$section" || continue
    for round in $(seq 1 "$ROUNDS"); do
        # Alternate, and rotate the order every round so no client always goes first.
        n=${#PERSISTENT[@]}
        for i in $(seq 0 $((n - 1))); do
            client=${PERSISTENT[$(( (i + round - 1) % n ))]}
            want_client "$client" && row "$section" "$client" "$round" "$CALLS"
        done
    done
    if want_client per-call-session; then
        calls=$PERCALL_CALLS
        [[ $section == stdio-everything ]] && calls=$PERCALL_SLOW_CALLS
        row "$section" per-call-session "" "$calls"
    fi
done

# The agent: library vs HTTP API on the builtin demo server.
if want_section agent; then
    API_PORT=$(free_port); ADMIN_PORT=$(free_port)
    MCPWATCH_AGENT__LISTEN=127.0.0.1:$API_PORT MCPWATCH_AGENT__ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT MCPWATCH_LOG__LEVEL=warn "$BIN" serve >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "$API_PORT"
    for round in $(seq 1 "$ROUNDS"); do
        want_client library-pooled && run_row agent library-pooled "$round" "$BIN" bench --server demo --tool echo --args "$ARGS" --calls "$CALLS" --latencies "$LAT/builtin-agent__library-pooled__r$round.txt" --json
        want_client agent-api && run_row agent agent-api "$round" "$BIN" bench --mode agent --agent "http://127.0.0.1:$API_PORT" --server demo --tool echo --args "$ARGS" --calls "$CALLS" --latencies "$LAT/builtin-agent__agent-api__r$round.txt" --json
    done
    want_client agent-api-c64 && run_row agent agent-api-c64 "" "$BIN" bench --mode agent --agent "http://127.0.0.1:$API_PORT" --server demo --tool echo --args "$ARGS" --calls $((CALLS * 10)) --concurrency 64 --json
fi

# --- peers: the mcpwatch gateway against the gateways people use (issue 14) -------
# The mcpwatch gateway's paths: LABEL|PATH|TOOL, PATH and TOOL with {server} and {tool}
# filled in per upstream: one server's endpoint, and the aggregate endpoint.
GATEWAY_PATHS=("gateway|/mcp/{server}|{tool}" "gateway-aggregate|/mcp|{server}__{tool}")
if want_section peers; then
    PEERS_WORK="$ROOT/$OUT/peers"
    rm -rf "$PEERS_WORK"; mkdir -p "$PEERS_WORK"
    SCOPE_HEADER="X-Mcpwatch-Scope: bench-per-call"
    declare -A PEER_URL PEER_TOOL
    # The mcpwatch agent: server-everything over stdio and the HTTP demo, on the gateway.
    GW_PORT=$(free_port); GW_ADMIN=$(free_port)
    printf '[agent]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n[servers.everything]\ntransport = "stdio"\ncommand = "node"\nargs = ["%s", "stdio"]\n[servers.demo]\ntransport = "http"\nurl = "http://127.0.0.1:%s/mcp"\n[servers.demo_stdio]\ntransport = "stdio"\ncommand = "%s"\nargs = ["demo-server", "--stdio"]\n' \
        "$GW_PORT" "$GW_ADMIN" "$EVERYTHING" "$DEMO_PORT" "$BIN" > "$PEERS_WORK/agent.toml"
    MCPWATCH_LOG__LEVEL=warn "$BIN" serve --config "$PEERS_WORK/agent.toml" >"$PEERS_WORK/agent.log" 2>&1 &
    PIDS+=($!)
    wait_port "$GW_PORT"
    for entry in "${GATEWAY_PATHS[@]}"; do
        IFS='|' read -r label path tool <<< "$entry"
        for up in stdio-everything:everything http-demo:demo stdio-demo:demo_stdio; do
            server="${up#*:}"
            PEER_URL[${up%%:*}/$label]="http://127.0.0.1:$GW_PORT${path//\{server\}/$server}"
            PEER_TOOL[${up%%:*}/$label]="${tool//\{server\}/$server}"  # still holds {tool}
        done
    done
    PEER_URL[http-demo/direct]="http://127.0.0.1:$DEMO_PORT/mcp"
    PEER_URL[stdio-everything/direct]="stdio"
    start_mcp_proxy "$PEERS_WORK/mcp-proxy-stdio.log" node "$EVERYTHING" stdio
    PEER_URL[stdio-everything/mcp-proxy]=$STARTED_URL
    start_mcp_proxy_http "$PEERS_WORK/mcp-proxy-http.log" "http://127.0.0.1:$DEMO_PORT/mcp"
    PEER_URL[http-demo/mcp-proxy]=$STARTED_URL
    start_fastmcp "$PEERS_WORK/fastmcp-stdio.log" -- node "$EVERYTHING" stdio
    PEER_URL[stdio-everything/fastmcp]=$STARTED_URL
    start_fastmcp "$PEERS_WORK/fastmcp-http.log" --url "http://127.0.0.1:$DEMO_PORT/mcp"
    PEER_URL[http-demo/fastmcp]=$STARTED_URL
    contextforge_env "$PEERS_WORK/contextforge"
    start_contextforge_bridge "$PEERS_WORK/contextforge-bridge.log" node "$EVERYTHING" stdio
    CF_BRIDGE=$STARTED_URL
    start_contextforge "$PEERS_WORK/contextforge.log"
    # ContextForge names an upstream's tools `{gateway}-{tool}`.
    contextforge_front everything "$CF_BRIDGE"
    PEER_URL[stdio-everything/contextforge]=$STARTED_URL
    PEER_TOOL[stdio-everything/contextforge]="everything-{tool}"
    contextforge_front demo "http://127.0.0.1:$DEMO_PORT/mcp"
    PEER_URL[http-demo/contextforge]=$STARTED_URL
    PEER_TOOL[http-demo/contextforge]="demo-{tool}"
    for key in "${!PEER_URL[@]}"; do echo "peers: $key -> ${PEER_URL[$key]}" >&2; done

    PEER_PATHS=(direct)
    for entry in "${GATEWAY_PATHS[@]}"; do PEER_PATHS+=("${entry%%|*}"); done
    PEER_PATHS+=(contextforge mcp-proxy fastmcp)
    # Calls per measurement, so that each takes seconds on every path: the Python peers
    # answer in tens of milliseconds, the others in about one.
    peer_calls() { # PATH MEASURE
        local divisor
        case "$1" in
            direct|gateway*) divisor=1 ;;
            mcp-proxy) divisor=4 ;;
            *) divisor=10 ;;
        esac
        case "$2" in
            persistent) echo $(( CALLS / divisor > 50 ? CALLS / divisor : 50 )) ;;
            per-call) echo $(( CALLS / 10 / divisor > 10 ? CALLS / 10 / divisor : 10 )) ;;
            c32) echo $(( CALLS * 5 / divisor / divisor > 160 ? CALLS * 5 / divisor / divisor : 160 )) ;;
        esac
    }
    peer_tool() { # UPSTREAM PATH TOOL: the name TOOL has on that path
        local template="${PEER_TOOL[$1/$2]:-}"
        [[ -n $template ]] || template="{tool}"
        echo "${template//\{tool\}/$3}"
    }
    peer_row() { # UPSTREAM PATH MEASURE ROUND CMD...
        local up="$1" path="$2" measure="$3" round="$4"; shift 4
        record_row "$OUT/peers.jsonl" "peers $up $path $measure #$round" \
            "\"upstream\":\"$up\",\"path\":\"$path\",\"measure\":\"$measure\",\"round\":$round" "$@"
    }
    peer_measure() { # UPSTREAM PATH ROUND
        local up="$1" path="$2" round="$3" url="${PEER_URL[$1/$2]}" tool
        tool=$(peer_tool "$up" "$path" echo)
        local lat="$LAT/peers-${up}__${path}__r${round}.txt"
        if [[ $url == stdio ]]; then
            local stdio=(-- node "$EVERYTHING" stdio)
            peer_row "$up" "$path" persistent "$round" "$RAW" --tool echo --args "$ARGS" --calls "$(peer_calls "$path" persistent)" --latencies "$lat" "${stdio[@]}"
            peer_row "$up" "$path" per-call "$round" "$RAW" --session-per-call --tool echo --args "$ARGS" --calls "$PEERS_STDIO_PERCALL" "${stdio[@]}"
            peer_row "$up" "$path" c32 "$round" "$RAW" --concurrency 32 --tool echo --args "$ARGS" --calls "$(peer_calls "$path" c32)" "${stdio[@]}"
            return
        fi
        local common=(--url "$url" --tool "$tool" --args "$ARGS" --json)
        peer_row "$up" "$path" persistent "$round" "$BIN" bench --mode mcp "${common[@]}" --calls "$(peer_calls "$path" persistent)" --latencies "$lat"
        peer_row "$up" "$path" per-call "$round" "$BIN" bench --mode mcp-per-call-session "${common[@]}" --header "$SCOPE_HEADER" --calls "$(peer_calls "$path" per-call)"
        peer_row "$up" "$path" c32 "$round" "$BIN" bench --mode mcp "${common[@]}" --concurrency 32 --calls "$(peer_calls "$path" c32)"
    }
    PEERS_STDIO_PERCALL="${BENCH_PERCALL_CALLS:-5}"
    for round in $(seq 1 "$ROUNDS"); do
        for up in stdio-everything http-demo; do
            n=${#PEER_PATHS[@]}
            for i in $(seq 0 $((n - 1))); do
                path=${PEER_PATHS[$(( (i + round - 1) % n ))]}
                want_client "$path" && peer_measure "$up" "$path" "$round"
            done
        done
        echo "peers: round $round of $ROUNDS done, $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg)" >&2
    done
    # Keeps state per scope: the demo's counter (server-everything has none), a session
    # per call, scopes A and B; over HTTP, and over stdio through each peer's stdio bridge
    # (started only now, so they idle through none of the rounds).
    start_mcp_proxy "$PEERS_WORK/mcp-proxy-demo.log" "$BIN" demo-server --stdio
    PEER_URL[stdio-demo/mcp-proxy]=$STARTED_URL
    start_fastmcp "$PEERS_WORK/fastmcp-demo.log" -- "$BIN" demo-server --stdio
    PEER_URL[stdio-demo/fastmcp]=$STARTED_URL
    start_contextforge_bridge "$PEERS_WORK/contextforge-demo-bridge.log" "$BIN" demo-server --stdio
    CF_DEMO_BRIDGE=$STARTED_URL
    contextforge_front demostdio "$CF_DEMO_BRIDGE"
    PEER_URL[stdio-demo/contextforge]=$STARTED_URL
    PEER_TOOL[stdio-demo/contextforge]="demostdio-{tool}"
    : > "$OUT/peers-state.jsonl"
    for up in http-demo stdio-demo; do
        for path in "${PEER_PATHS[@]}"; do
            url="${PEER_URL[$up/$path]:-}"
            want_client "$path" && [[ -n $url ]] || continue
            state=$("$PY" "$ROOT/benches/scope_state.py" --url "$url" \
                --tool "$(peer_tool "$up" "$path" counter)" 2>/dev/null | tail -n1) || true
            echo "peers: keeps state per scope, $up $path: $state" >&2
            printf '{"upstream":"%s","path":"%s","state":%s}\n' "$up" "$path" "${state:-null}" >> "$OUT/peers-state.jsonl"
        done
    done
fi

# --- summary ---------------------------------------------------------------------
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.md"
echo
: > "$OUT/summary.md"
if [[ -s "$OUT/results.jsonl" ]]; then
python3 - "$OUT/results.jsonl" <<'PY' | tee -a "$OUT/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
SECTIONS = ["stdio-everything", "http-everything", "stdio-demo", "http-demo", "agent"]
CLIENTS = ["raw-rmcp", "mcpwatch-pooled", "mcpwatch-telemetry", "python-sdk", "per-call-session",
           "library-pooled", "agent-api", "agent-api-c64"]
NAMES = {"raw-rmcp": "raw rmcp", "mcpwatch-pooled": "mcpwatch pooled",
         "mcpwatch-telemetry": "mcpwatch pooled, telemetry on", "python-sdk": "Python mcp SDK",
         "per-call-session": "one session per call", "library-pooled": "library pooled (builtin demo)",
         "agent-api": "through the agent API", "agent-api-c64": "through the agent API, concurrency 64"}
groups = {}
for r in rows:
    groups.setdefault((r["section"], r["client"]), []).append(r["result"])
def order(key):
    s, c = key
    return (SECTIONS.index(s) if s in SECTIONS else 99, CLIENTS.index(c) if c in CLIENTS else 99, c)
keys = sorted(groups, key=order)
def med(key, field):
    return statistics.median(x[field] for x in groups[key]) if key in groups else None
def us(v):
    return "" if v is None else f"{v:,.0f}"

print("## Medians over rounds (µs)")
print()
print("| section | client | rounds | calls/round | p50 per round | p50 | p90 | p99 | calls/s | vs raw rmcp (p50) |")
print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
for key in keys:
    s, c = key
    results = groups[key]
    raw = med((s, "raw-rmcp"), "p50_us")
    ratio = f"{med(key, 'p50_us') / raw:.2f}" if raw else ""
    errors = sum(x["errors"] for x in results)
    note = f" ({errors} errors)" if errors else ""
    print(f"| {s} | {NAMES.get(c, c)}{note} | {len(results)} | {results[0]['calls']} | "
          f"{', '.join(str(x['p50_us']) for x in results)} | {us(med(key, 'p50_us'))} | {us(med(key, 'p90_us'))} | "
          f"{us(med(key, 'p99_us'))} | {us(med(key, 'calls_per_s'))} | {ratio} |")

print()
print("## Median p50 by server and transport (µs)")
print()
heads = ["raw-rmcp", "mcpwatch-pooled", "mcpwatch-telemetry", "python-sdk", "per-call-session"]
print("| section | " + " | ".join(NAMES[c] for c in heads) + " |")
print("|---|" + "---:|" * len(heads))
for s in SECTIONS[:4]:
    if any((s, c) in groups for c in heads):
        print(f"| {s} | " + " | ".join(us(med((s, c), "p50_us")) for c in heads) + " |")

print()
print("## Ratios of median p50")
print()
print("| section | pooled / raw | telemetry on / raw | Python SDK / raw | one session per call / pooled |")
print("|---|---:|---:|---:|---:|")
def ratio(s, a, b):
    x, y = med((s, a), "p50_us"), med((s, b), "p50_us")
    return f"{x / y:,.2f}" if x is not None and y else ""
for s in SECTIONS[:4]:
    if any(k[0] == s for k in groups):
        print(f"| {s} | {ratio(s, 'mcpwatch-pooled', 'raw-rmcp')} | {ratio(s, 'mcpwatch-telemetry', 'raw-rmcp')} | "
              f"{ratio(s, 'python-sdk', 'raw-rmcp')} | {ratio(s, 'per-call-session', 'mcpwatch-pooled')} |")

# Rounds drift (the machine's speed changes over minutes): the ratio of two clients
# within one round, then the median over rounds, cancels that drift.
print()
print("## Paired ratios: median over rounds of each round's p50 ratio")
print()
print("| section | pooled / raw | telemetry on / raw | telemetry on / pooled | Python SDK / raw |")
print("|---|---:|---:|---:|---:|")
by_round = {}
for r in rows:
    by_round[(r["section"], r["client"], r.get("round"))] = r["result"]["p50_us"]
def paired(s, a, b):
    ratios = [by_round[(s, a, n)] / by_round[(s, b, n)]
              for (sec, cl, n) in by_round
              if sec == s and cl == a and n is not None and by_round.get((s, b, n))]
    return f"{statistics.median(ratios):.2f} ({len(ratios)})" if ratios else ""
for s in SECTIONS[:4]:
    if any(k[0] == s for k in groups):
        print(f"| {s} | {paired(s, 'mcpwatch-pooled', 'raw-rmcp')} | {paired(s, 'mcpwatch-telemetry', 'raw-rmcp')} | "
              f"{paired(s, 'mcpwatch-telemetry', 'mcpwatch-pooled')} | {paired(s, 'python-sdk', 'raw-rmcp')} |")
lib, api = med(("agent", "library-pooled"), "p50_us"), med(("agent", "agent-api"), "p50_us")
if lib is not None and api is not None:
    print()
    print(f"Agent API added at p50: {api - lib:,.0f} µs (library {lib:,.0f} µs, through the API {api:,.0f} µs).")
c64 = groups.get(("agent", "agent-api-c64"))
if c64:
    print(f"Agent throughput at concurrency 64: {c64[0]['calls_per_s']:,.0f} calls/s ({c64[0]['errors']} errors).")

print()
print("## All rows")
print()
print("| row | calls | errors | p50 µs | p90 µs | p99 µs | max µs | calls/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    x = r["result"]
    print(f'| {r["row"]} | {x["calls"]} | {x["errors"]} | {x["p50_us"]} | {x["p90_us"]} | {x["p99_us"]} | {x["max_us"]} | {x["calls_per_s"]:.0f} |')
PY
fi
if [[ -s "$OUT/peers.jsonl" ]]; then
    PEERS_PENDING=""
    [[ " ${PEER_PATHS[*]} " == *" gateway-aggregate "* ]] \
        || PEERS_PENDING="gateway-aggregate=mcpwatch gateway, aggregate /mcp: pending (the aggregate endpoint is not on main yet)"
    python3 benches/peers_summary.py "$OUT/peers.jsonl" "$OUT/peers-state.jsonl" ${PEERS_PENDING:+--pending "$PEERS_PENDING"} \
        | tee -a "$OUT/summary.md"
fi

# --- charts ------------------------------------------------------------------------
NOTE="$CALLS sequential calls x $ROUNDS rounds per client, rounds pooled; one session per call: $PERCALL_CALLS calls ($PERCALL_SLOW_CALLS on stdio-everything). $(nproc) cores, ${CPU_MODEL:-unknown CPU}, $(date -u +%Y-%m-%d)"
if [[ $ONLY == peers ]]; then
    NOTE="one session, sequential calls x $ROUNDS rounds, rounds pooled: $CALLS per round direct and mcpwatch, $((CALLS / 4)) mcp-proxy, $((CALLS / 10)) ContextForge and fastmcp. $(nproc) cores, $(date -u +%Y-%m-%d)"
fi
PEER_LABELS=()
if want_section peers; then
    while read -r package version _; do
        case "$package" in
            mcp-contextforge-gateway) PEER_LABELS+=(--label "contextforge=IBM ContextForge $version${BENCH_CF_STATEFUL:+, stateful sessions}") ;;
            mcp-proxy) PEER_LABELS+=(--label "mcp-proxy=mcp-proxy $version") ;;
            fastmcp) PEER_LABELS+=(--label "fastmcp=fastmcp $version create_proxy") ;;
        esac
    done < <(peer_versions)
fi
if compgen -G "$LAT/*.txt" > /dev/null; then
    echo
    echo "Charts:"
    python3 benches/charts.py "$LAT" "$CHARTS_DIR" --note "$NOTE" \
        --label "raw-rmcp=raw rmcp $RMCP_VERSION (one session, no pool)" \
        --label "python-sdk=Python mcp SDK $MCP_VERSION (one session)" \
        "${PEER_LABELS[@]}"
    # Every chart must parse as XML (GitHub shows nothing for a broken SVG).
    python3 -c 'import sys, xml.etree.ElementTree as E; [E.parse(f) for f in sys.argv[1:]]' "$CHARTS_DIR"/*.svg
fi
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "failed rows: ${FAILED[*]}" >&2
    exit 1
fi
