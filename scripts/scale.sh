#!/usr/bin/env bash
# Scale runs. Issue 6: many pooled streamable-HTTP sessions, then LRU churn over the
# builtin, HTTP and stdio transports. Client (benches/scale.rs) and demo server
# (`mcpwatch demo-server`) run in separate processes, on 127.0.0.1 only.
# Issue 14 (the gateway): many downstream MCP sessions open at once through
# `mcpwatch serve` (a child process), with a named scope over the builtin demo and with
# session scopes over `mcpwatch demo-server --http`, each ended once by DELETE and once
# by idle expiry; then a session-per-call client at concurrency 64 next to the /v1 API.
#
#   scripts/scale.sh                 # everything (~15 min)
#   SCALE_COUNT=2000 SCALE_MAX=0 CHURN_SECONDS=10 STDIO_SECONDS=5 GATEWAY_COUNT=1000 \
#     PER_CALL_CALLS=2000 PER_CALL_ROUNDS=2 scripts/scale.sh   # a quick pass
#   SCALE_ONLY=gateway scripts/scale.sh   # only the gateway runs (pool: only issue 6's)
#
# Environment: SCALE_COUNT (sessions of the first run, default 5000, lowered to fit the
# fd limit), SCALE_MAX (sessions of the second run; default: the hard fd limit less
# headroom, capped at 20000; 0 skips it), CHURN_SECONDS (60), STDIO_SECONDS (20; 0 skips
# stdio churn), CONCURRENCY (64), GATEWAY_COUNT (downstream sessions, 10000, lowered to
# fit the fd limit), GATEWAY_IDLE_TTL (the idle-expiry runs' session_idle_ttl, 90 s; it
# must outlast the opening), PER_CALL_CALLS (calls per row and round, 20000),
# PER_CALL_ROUNDS (5), SCALE_ONLY (pool | gateway; default both). Builds go to
# $CARGO_TARGET_DIR (default target/). Results: the tables on stdout, one JSON line per
# run in $CARGO_TARGET_DIR/scale/results.jsonl. Exit status: non-zero if any run failed
# a check.
set -euo pipefail
cd "$(dirname "$0")/.."

CHURN_SECONDS=${CHURN_SECONDS:-60}
STDIO_SECONDS=${STDIO_SECONDS:-20}
CONCURRENCY=${CONCURRENCY:-64}
GATEWAY_IDLE_TTL=${GATEWAY_IDLE_TTL:-90}
PER_CALL_CALLS=${PER_CALL_CALLS:-20000}
PER_CALL_ROUNDS=${PER_CALL_ROUNDS:-5}
SCALE_ONLY=${SCALE_ONLY:-all}
TARGET=${CARGO_TARGET_DIR:-target}

# Each process needs one fd per session (its GET stream's connection) plus the
# connections of the calls in flight, plus its own; the shutdown's DELETEs borrow
# more. Leave 10% (at least 1000) of the hard limit as headroom.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]]; then hard=1048576; fi
headroom=$(( hard / 10 > 1000 ? hard / 10 : 1000 ))
fits=$(( hard - headroom ))
if (( fits < 100 )); then
  echo "scale.sh: the hard fd limit ($hard) is too low for a scale run" >&2
  exit 1
fi
count=${SCALE_COUNT:-5000}
if (( count > fits )); then
  echo "scale.sh: the hard fd limit is $hard: $count sessions do not fit, running $fits" >&2
  count=$fits
fi
max=${SCALE_MAX:-$(( fits < 20000 ? fits : 20000 ))}
# With session scopes, the agent holds an upstream connection per downstream session.
gateway_count=${GATEWAY_COUNT:-10000}
if (( gateway_count > fits )); then
  echo "scale.sh: the hard fd limit is $hard: $gateway_count gateway sessions do not fit, running $fits" >&2
  gateway_count=$fits
fi

echo "== building (release): cargo bench --bench scale --no-run"
built=$(cargo bench --bench scale --no-run 2>&1 | tee /dev/stderr | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
if [[ -z $built || ! -x $built ]]; then
  echo "scale.sh: cannot find the built bench executable" >&2
  exit 1
fi
# Run links (copies where links fail): a build in the same tree meanwhile replaces
# the files cargo links to, and must not swap the binaries mid-run.
mkdir -p "$TARGET/scale"
ln -f "$built" "$TARGET/scale/scale" 2>/dev/null || cp "$built" "$TARGET/scale/scale"
ln -f "$TARGET/release/mcpwatch" "$TARGET/scale/mcpwatch" 2>/dev/null ||
  cp "$TARGET/release/mcpwatch" "$TARGET/scale/mcpwatch"
results=$TARGET/scale/results.jsonl
: > "$results"
failed=0

# Runs one scale subcommand (what `cargo bench --bench scale -- ARGS` runs); the last
# line of its output is its JSON result.
run() {
  local out
  out=$(mktemp)
  echo
  echo "== cargo bench --bench scale -- $* --json"
  if "$TARGET/scale/scale" --bench "$@" --json --server-bin "$TARGET/scale/mcpwatch" | tee "$out"; then :; else failed=1; fi
  tail -n 1 "$out" | grep '^{' >> "$results" || true
  rm -f "$out"
}

if [[ $SCALE_ONLY != gateway ]]; then
  run sessions --count "$count" --concurrency "$CONCURRENCY"
  if (( max > count )); then
    run sessions --count "$max" --concurrency "$CONCURRENCY"
  fi
  run churn --transport builtin --seconds "$CHURN_SECONDS"
  run churn --transport http --seconds "$CHURN_SECONDS"
  if (( STDIO_SECONDS > 0 )); then
    run churn --transport stdio --seconds "$STDIO_SECONDS"
  fi
fi

if [[ $SCALE_ONLY != pool ]]; then
  for scope in named session; do
    run gateway-sessions --scope "$scope" --count "$gateway_count" --concurrency "$CONCURRENCY" --end delete
    run gateway-sessions --scope "$scope" --count "$gateway_count" --concurrency "$CONCURRENCY" \
      --end idle --idle-ttl-secs "$GATEWAY_IDLE_TTL"
  done
  run gateway-per-call --concurrency "$CONCURRENCY" --calls "$PER_CALL_CALLS" \
    --rounds "$PER_CALL_ROUNDS" --session-scope --breakdown
fi

echo
echo "== results (one JSON line per run): $results"
cat "$results"
if (( failed )); then
  echo "scale.sh: a run failed a check" >&2
  exit 1
fi
