#!/usr/bin/env bash
# Client instructions per pooled stdio `echo` against server-everything
# (BENCHMARKS.md, "Telemetry on the call path"): valgrind --tool=callgrind on the
# client process, all threads, (Ir at N2 calls - Ir at N1 calls) / (N2 - N1), for
#   raw rmcp (examples/raw_rmcp.rs), mcpwatch with telemetry off, and mcpwatch with
#   OTLP + Sentry on (local receivers that answer 200, capture_payloads = false).
# Instruction counts do not drift with the machine's load, so one run is enough.
#
# Usage: scripts/callgrind.sh [N1 N2]      (default 300 1300)
# MCPWATCH_BIN=path measures another mcpwatch build (an A/B against an older commit).
# Needs: valgrind, a release build (built here), .test-deps (scripts/install-test-deps.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N1="${1:-300}"
N2="${2:-1300}"
EVERYTHING="$ROOT/.test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[[ -f "$EVERYTHING" ]] || { echo "run scripts/install-test-deps.sh first" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

cargo build --release --quiet --bin mcpwatch --example raw_rmcp
TARGET="${CARGO_TARGET_DIR:-target}/release"
MCPWATCH="${MCPWATCH_BIN:-$TARGET/mcpwatch}"
WORK="$(mktemp -d)"
RECEIVER_PID=""
cleanup() {
    [[ -n "$RECEIVER_PID" ]] && kill "$RECEIVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A receiver for OTLP/HTTP and Sentry envelopes that accepts everything.
PORT_FILE="$WORK/port"
python3 - "$PORT_FILE" <<'EOF' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0) or 0))
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
EOF
RECEIVER_PID=$!
for _ in $(seq 1 50); do [[ -s "$PORT_FILE" ]] && break; sleep 0.1; done
PORT="$(cat "$PORT_FILE")"

server_entry() {
    cat <<EOF
[servers.everything]
transport = "stdio"
command = "node"
args = ["$EVERYTHING", "stdio"]
EOF
}
server_entry > "$WORK/off.toml"
{
    server_entry
    cat <<EOF
[telemetry]
capture_payloads = false
[telemetry.otlp]
endpoint = "http://127.0.0.1:$PORT"
[telemetry.sentry]
dsn = "http://public@127.0.0.1:$PORT/1"
EOF
} > "$WORK/on.toml"

# Total instructions of the client process (all threads) for `calls` calls; the
# command's `CALLS` word is replaced by the count.
instructions() {
    local out="$WORK/cg.out" calls="$1"; shift
    local command=("${@/#CALLS/$calls}")
    valgrind --tool=callgrind --callgrind-out-file="$out" "${command[@]}" >/dev/null 2>"$WORK/vg.log"
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

per_call() {
    local label="$1"; shift
    local a b
    a="$(instructions "$N1" "$@")"
    b="$(instructions "$N2" "$@")"
    printf '%-28s %10d instructions per call\n' "$label" "$(( (b - a) / (N2 - N1) ))"
}

ARGS=(--tool echo --args '{"message":"hello"}' --calls CALLS)
echo "== client instructions per call, stdio echo against server-everything ($N1 vs $N2 calls)"
per_call "raw rmcp" "$TARGET/examples/raw_rmcp" "${ARGS[@]}" -- node "$EVERYTHING" stdio
per_call "mcpwatch, telemetry off" "$MCPWATCH" bench --config "$WORK/off.toml" --server everything "${ARGS[@]}" --json
per_call "mcpwatch, OTLP + Sentry on" "$MCPWATCH" bench --config "$WORK/on.toml" --server everything "${ARGS[@]}" --json
