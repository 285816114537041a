#!/usr/bin/env bash
# Head-to-head benchmarks, all in one run on this machine (release build):
# raw rmcp vs mcpwatch (pooled, telemetry off and all on, per-call session) over
# stdio and streamable HTTP against server-everything, and the agent's HTTP API
# against the library on the builtin demo server.
#
#   scripts/bench.sh [CALLS] [ROUNDS]   # default 2000 calls per row, 5 rounds
#
# The head-to-head rows (raw rmcp, mcpwatch pooled, telemetry on) run in ROUNDS
# alternating rounds; the summary quotes the median p50 of each and the ratios.
#
# Prints a Markdown table (paste into BENCHMARKS.md) and keeps the raw JSON lines
# in target/bench/results.jsonl. Only 127.0.0.1 is used; every process started
# here is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CALLS="${1:-2000}"
ROUNDS="${2:-5}"
OUT=target/bench
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

scripts/install-test-deps.sh
cargo build --release --bins --examples -q
BIN=target/release/mcpwatch
RAW=target/release/examples/raw_rmcp
EVERYTHING="$ROOT/.test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# A sink that answers 200 to OTLP and Sentry posts (so "telemetry all on" exports for real).
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
HTTP_PORT=$(free_port)
PORT=$HTTP_PORT node "$EVERYTHING" streamableHttp >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$SINK_PORT"; wait_port "$HTTP_PORT"

ARGS='{"message":"hello"}'
cat > "$OUT/stdio.toml" <<TOML
[servers.everything]
transport = "stdio"
command = "node"
args = ["$EVERYTHING", "stdio"]
[servers.everything_http]
transport = "http"
url = "http://127.0.0.1:$HTTP_PORT/mcp"
[servers.demo]
transport = "builtin"
TOML
sed -e "s|^\[servers.everything\]|[telemetry.otlp]\nendpoint = \"http://127.0.0.1:$SINK_PORT\"\n[telemetry.sentry]\ndsn = \"http://k@127.0.0.1:$SINK_PORT/1\"\n[servers.everything]|" "$OUT/stdio.toml" > "$OUT/telemetry.toml"

row() { # name, then the command printing one JSON line
    local name="$1"; shift
    local line
    line=$("$@" | tail -n1)
    echo "{\"row\":\"$name\",\"result\":$line}" >> "$OUT/results.jsonl"
    echo "$name: $line" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    row "stdio raw rmcp #$round" $RAW --tool echo --args "$ARGS" --calls "$CALLS" -- node "$EVERYTHING" stdio
    row "stdio mcpwatch pooled #$round" $BIN bench --config "$OUT/stdio.toml" --server everything --tool echo --args "$ARGS" --calls "$CALLS" --json
    row "stdio mcpwatch pooled, telemetry on #$round" $BIN bench --config "$OUT/telemetry.toml" --server everything --tool echo --args "$ARGS" --calls "$CALLS" --json
done
row "stdio one session per call" $BIN bench --config "$OUT/stdio.toml" --server everything --tool echo --args "$ARGS" --calls 20 --mode per-call-session --json
for round in $(seq 1 "$ROUNDS"); do
    row "http raw rmcp #$round" $RAW --tool echo --args "$ARGS" --calls "$CALLS" --http "http://127.0.0.1:$HTTP_PORT/mcp"
    row "http mcpwatch pooled #$round" $BIN bench --config "$OUT/stdio.toml" --server everything_http --tool echo --args "$ARGS" --calls "$CALLS" --json
    row "http mcpwatch pooled, telemetry on #$round" $BIN bench --config "$OUT/telemetry.toml" --server everything_http --tool echo --args "$ARGS" --calls "$CALLS" --json
done
row "http one session per call" $BIN bench --config "$OUT/stdio.toml" --server everything_http --tool echo --args "$ARGS" --calls 200 --mode per-call-session --json

# The agent: library vs HTTP API on the builtin demo server.
API_PORT=$(free_port); ADMIN_PORT=$(free_port)
MCPWATCH_AGENT__LISTEN=127.0.0.1:$API_PORT MCPWATCH_AGENT__ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT MCPWATCH_LOG__LEVEL=warn $BIN serve >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$API_PORT"
for round in $(seq 1 "$ROUNDS"); do
    row "builtin library pooled #$round" $BIN bench --server demo --tool echo --args "$ARGS" --calls "$CALLS" --json
    row "builtin through the agent API #$round" $BIN bench --mode agent --agent "http://127.0.0.1:$API_PORT" --server demo --tool echo --args "$ARGS" --calls "$CALLS" --json
done
row "builtin through the agent API, concurrency 64" $BIN bench --mode agent --agent "http://127.0.0.1:$API_PORT" --server demo --tool echo --args "$ARGS" --calls $((CALLS * 10)) --concurrency 64 --json

python3 - "$OUT/results.jsonl" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| row | calls | errors | p50 µs | p90 µs | p99 µs | max µs | calls/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    x = r["result"]
    print(f'| {r["row"]} | {x["calls"]} | {x["errors"]} | {x["p50_us"]} | {x["p90_us"]} | {x["p99_us"]} | {x["max_us"]} | {x["calls_per_s"]:.0f} |')
groups = {}
for r in rows:
    name = re.sub(r" #\d+$", "", r["row"])
    groups.setdefault(name, []).append(r["result"]["p50_us"])
med = {name: statistics.median(v) for name, v in groups.items() if len(v) > 1}
print()
print("| median over rounds | p50 µs (median) | rounds |")
print("|---|---:|---:|")
for name, v in med.items():
    print(f"| {name} | {v:.0f} | {len(groups[name])} |")
def ratio(a, b):
    if a in med and b in med:
        print(f"| {a} / {b} | {med[a] / med[b]:.3f} |")
print()
print("| ratio of medians | value |")
print("|---|---:|")
ratio("stdio mcpwatch pooled", "stdio raw rmcp")
ratio("stdio mcpwatch pooled, telemetry on", "stdio raw rmcp")
ratio("http mcpwatch pooled", "http raw rmcp")
ratio("http mcpwatch pooled, telemetry on", "http raw rmcp")
if "builtin through the agent API" in med and "builtin library pooled" in med:
    print(f'| agent API added p50 (µs) | {med["builtin through the agent API"] - med["builtin library pooled"]:.0f} |')
PY