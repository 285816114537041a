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
#
# The persistent-session clients run in ROUNDS alternating rounds (the order
# rotates every round); the summary quotes the median of each client's per-round
# p50/p90/p99 and the ratios to raw rmcp. Every measured call's latency goes to
# target/bench/latencies/<section>__<client>__r<round>.txt, and
# benches/charts.py turns those into one SVG per section (CDF + tail).
#
# Environment:
#   BENCH_ONLY=stdio-demo,http-*   run only these sections (comma list of globs;
#                                  sections above plus `agent`)
#   BENCH_CLIENTS=raw-rmcp,python-sdk  run only these clients (comma list of globs;
#                                  agent clients: library-pooled, agent-api, agent-api-c64)
#   BENCH_PERCALL_CALLS=N          calls of the per-call-session rows (default CALLS/10,
#                                  at least 20; CALLS/100, at least 5, for stdio-everything,
#                                  where each call starts a Node process)
#   BENCH_CHARTS_DIR=DIR           where the SVGs go (default benches/results)
#   BENCH_NO_BUILD=1               skip the dependency install and the cargo build
#   BENCH_ROW_TIMEOUT=SECONDS      kill a row that runs longer (default 600)
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

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    scripts/install-test-deps.sh
    cargo build --release --bins --examples -q
fi
BIN="$ROOT/target/release/mcpwatch"
RAW="$ROOT/target/release/examples/raw_rmcp"
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
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
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
# run_row SECTION CLIENT ROUND CMD...: runs CMD (bounded by BENCH_ROW_TIMEOUT),
# records its JSON line in results.jsonl.
run_row() {
    local section="$1" client="$2" round="$3"; shift 3
    local name="$section $client${round:+ #$round}" rc=0 line
    timeout -k 10 "$ROW_TIMEOUT" "$@" > "$OUT/row.out" &
    ROW_PID=$!
    wait "$ROW_PID" || rc=$?
    ROW_PID=""
    line=$(tail -n1 "$OUT/row.out")
    if [[ $line == \{* ]]; then
        printf '{"row":"%s","section":"%s","client":"%s","round":%s,"result":%s}\n' \
            "$name" "$section" "$client" "${round:-0}" "$line" >> "$OUT/results.jsonl"
        echo "$name: $line" >&2
    else
        echo "$name: FAILED (exit $rc)" >&2
        FAILED+=("$name")
    fi
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

# --- summary ---------------------------------------------------------------------
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.md"
echo
python3 - "$OUT/results.jsonl" <<'PY' | tee "$OUT/summary.md"
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

# --- charts ------------------------------------------------------------------------
NOTE="$CALLS sequential calls x $ROUNDS rounds per client, rounds pooled; one session per call: $PERCALL_CALLS calls ($PERCALL_SLOW_CALLS on stdio-everything). $(nproc) cores, ${CPU_MODEL:-unknown CPU}, $(date -u +%Y-%m-%d)"
if compgen -G "$LAT/*.txt" > /dev/null; then
    echo
    echo "Charts:"
    python3 benches/charts.py "$LAT" "$CHARTS_DIR" --note "$NOTE" \
        --label "raw-rmcp=raw rmcp $RMCP_VERSION (one session, no pool)" \
        --label "python-sdk=Python mcp SDK $MCP_VERSION (one session)"
    # Every chart must parse as XML (GitHub shows nothing for a broken SVG).
    python3 -c 'import sys, xml.etree.ElementTree as E; [E.parse(f) for f in sys.argv[1:]]' "$CHARTS_DIR"/*.svg
fi
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "failed rows: ${FAILED[*]}" >&2
    exit 1
fi
