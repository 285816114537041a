#!/usr/bin/env python3
"""Markdown tables of scripts/bench.sh's `peers` section (issue 14), and its targets.

    python3 benches/peers_summary.py PEERS_JSONL STATE_JSONL [--pending KEY=TEXT ...]

PEERS_JSONL: one line per measurement, {"upstream", "path", "measure", "round", "result"},
`measure` one of `persistent` (one session, sequential calls), `per-call` (a session
per call) and `c32` (one session, 32 calls in flight); `result` is the JSON line of
`mcpwatch bench --json`. STATE_JSONL: {"upstream", "path", "state"} from
benches/scope_state.py. `--pending` adds a row that was not measured, with its reason.

Every figure is the median over rounds; "added" and the ratios are paired: computed
within each round, then the median over rounds (the machine's speed drifts between
rounds, and the pairing cancels it).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

UPSTREAMS = {
    "stdio-everything": "server-everything over stdio",
    "http-demo": "the demo server over streamable HTTP",
}
PATH_ORDER = ["direct", "gateway", "gateway-aggregate", "contextforge", "mcp-proxy", "fastmcp"]
NAMES = {
    ("stdio-everything", "direct"): "direct: raw rmcp over stdio (`examples/raw_rmcp.rs`)",
    ("http-demo", "direct"): "direct: the demo's own URL",
    ("*", "gateway"): "**mcpwatch gateway, `/mcp/{server}`**",
    ("*", "gateway-aggregate"): "**mcpwatch gateway, `/mcp`**",
    ("stdio-everything", "contextforge"): "ContextForge (through its stdio bridge, `mcpgateway.translate`)",
    ("http-demo", "contextforge"): "ContextForge",
    ("stdio-everything", "mcp-proxy"): "mcp-proxy",
    ("http-demo", "mcp-proxy"): "mcp-proxy: serves only stdio servers, so through its own stdio-to-HTTP bridge (a second mcp-proxy)",
    ("stdio-everything", "fastmcp"): "fastmcp `create_proxy` (its stdio transport)",
    ("http-demo", "fastmcp"): "fastmcp `create_proxy`",
}
PEERS = ["contextforge", "mcp-proxy", "fastmcp"]
GATEWAYS = ["gateway", "gateway-aggregate"]


def name(upstream: str, path: str) -> str:
    return NAMES.get((upstream, path)) or NAMES.get(("*", path)) or path


def ms(us: float | None) -> str:
    if us is None:
        return ""
    return f"{us / 1000:.2f} ms" if us < 10_000 else f"{us / 1000:.1f} ms"


def rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


class Results:
    def __init__(self, rows: list[dict]):
        # (upstream, path, measure) -> {round: result}
        self.by = defaultdict(dict)
        for row in rows:
            self.by[(row["upstream"], row["path"], row["measure"])][row["round"]] = row["result"]

    def rounds(self, upstream: str, path: str, measure: str) -> dict[int, dict]:
        return self.by.get((upstream, path, measure), {})

    def median(self, upstream: str, path: str, measure: str, field: str) -> float | None:
        values = [r[field] for r in self.rounds(upstream, path, measure).values()]
        return statistics.median(values) if values else None

    def paired(self, upstream: str, measure: str, field: str, a: str, b: str, op) -> float | None:
        """Median over rounds of op(a's field, b's field) in the same round."""
        ra, rb = self.rounds(upstream, a, measure), self.rounds(upstream, b, measure)
        values = [op(ra[n][field], rb[n][field]) for n in ra if n in rb and rb[n][field]]
        return statistics.median(values) if values else None

    def added_p50(self, upstream: str, path: str) -> float | None:
        return self.paired(upstream, "persistent", "p50_us", path, "direct", lambda x, y: x - y)

    def errors(self, upstream: str, path: str) -> int:
        return sum(r["errors"] for m in ("persistent", "per-call", "c32")
                   for r in self.rounds(upstream, path, m).values())

    def paths(self, upstream: str) -> list[str]:
        seen = {p for (u, p, _) in self.by if u == upstream}
        return [p for p in PATH_ORDER if p in seen] + sorted(seen - set(PATH_ORDER))


def state_text(state: dict | None) -> str:
    if not state:
        return ""
    if "error" in state:
        return f"error: {state['error'][:60]}"
    verdict = "**yes**" if state.get("keeps_state") else "no"
    a, b = ",".join(map(str, state["a"])), ",".join(map(str, state["b"]))
    return f"{verdict} (A: {a}; B: {b})"


def figures_table(res: Results, states: dict, upstream: str, pending: dict[str, str]) -> None:
    state_of = "stdio-demo" if upstream.startswith("stdio") else "http-demo"
    print(f"### {UPSTREAMS.get(upstream, upstream)}")
    print()
    print("| path | persistent p50 | p99 | added p50 over direct | session per call p50 | "
          "calls/s at c=32, one session | keeps state per scope |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for path in res.paths(upstream):
        errors = res.errors(upstream, path)
        note = f" ({errors} errors)" if errors else ""
        added = res.added_p50(upstream, path) if path != "direct" else None
        state = states.get((state_of, path))
        if upstream.startswith("stdio") and path == "direct":
            state_cell = "no (a process per session)"
        else:
            state_cell = state_text(state)
        print(f"| {name(upstream, path)}{note} | {ms(res.median(upstream, path, 'persistent', 'p50_us'))} | "
              f"{ms(res.median(upstream, path, 'persistent', 'p99_us'))} | {ms(added)} | "
              f"{ms(res.median(upstream, path, 'per-call', 'p50_us'))} | "
              f"{rate(res.median(upstream, path, 'c32', 'calls_per_s'))} | {state_cell} |")
    for key, text in pending.items():
        if key not in res.paths(upstream):
            print(f"| {text} | | | | | | |")
    print()


def ratios_table(res: Results, upstream: str) -> None:
    print(f"Paired ratios, {UPSTREAMS.get(upstream, upstream)} (median over rounds of each round's ratio):")
    print()
    print("| path | persistent p50 / mcpwatch's | added p50 / mcpwatch's | session per call p50 / mcpwatch's | "
          "mcpwatch's c=32 calls/s / this path's |")
    print("|---|---:|---:|---:|---:|")
    div = lambda x, y: x / y  # noqa: E731
    for path in res.paths(upstream):
        if path == "gateway":
            continue
        p50 = res.paired(upstream, "persistent", "p50_us", path, "gateway", div)
        per_call = res.paired(upstream, "per-call", "p50_us", path, "gateway", div)
        c32 = res.paired(upstream, "c32", "calls_per_s", "gateway", path, div)
        added, gw_added = res.added_p50(upstream, path), res.added_p50(upstream, "gateway")
        added_ratio = added / gw_added if added is not None and gw_added and path != "direct" else None
        f = lambda v: "" if v is None else f"{v:,.1f}" if v >= 10 else f"{v:.2f}"  # noqa: E731
        print(f"| {name(upstream, path)} | {f(p50)} | {f(added_ratio)} | {f(per_call)} | {f(c32)} |")
    print()


def targets(res: Results, states: dict) -> None:
    print("### Targets (issue 14)")
    print()
    print("| target | upstream | measured | |")
    print("|---|---|---|---|")
    for upstream in UPSTREAMS:
        peers = [p for p in PEERS if res.rounds(upstream, p, "persistent")]
        gw = res.added_p50(upstream, "gateway")
        added = {p: res.added_p50(upstream, p) for p in peers}
        added = {p: v for p, v in added.items() if v is not None}
        if gw is not None and added:
            best = min(added, key=added.get)
            met = gw <= added[best] / 10
            print(f"| added p50 ≤ 1/10 of the best peer's | {upstream} | mcpwatch {ms(gw)}, best peer "
                  f"({best}) {ms(added[best])}: {gw / added[best]:.3f} of it | {'met' if met else 'not met'} |")
        gw_c32 = res.median(upstream, "gateway", "c32", "calls_per_s")
        direct_c32 = res.median(upstream, "direct", "c32", "calls_per_s")
        peer_c32 = {p: res.median(upstream, p, "c32", "calls_per_s") for p in peers}
        peer_c32 = {p: v for p, v in peer_c32.items() if v is not None}
        if gw_c32 is not None and direct_c32 and peer_c32:
            best = max(peer_c32, key=peer_c32.get)
            goal = min(10 * peer_c32[best], 0.8 * direct_c32)
            met = gw_c32 >= goal
            print(f"| c=32 throughput ≥ min(10x best peer, 80% of direct) | {upstream} | mcpwatch {rate(gw_c32)}/s; "
                  f"best peer ({best}) {rate(peer_c32[best])}/s, direct {rate(direct_c32)}/s: goal {rate(goal)}/s "
                  f"({gw_c32 / peer_c32[best]:.1f}x the peer, {gw_c32 / direct_c32:.0%} of direct) | "
                  f"{'met' if met else 'not met'} |")
    upstream = "stdio-everything"
    gw = res.median(upstream, "gateway", "per-call", "p50_us")
    for peer in PEERS:
        ratio = res.paired(upstream, "per-call", "p50_us", peer, "gateway", lambda x, y: x / y)
        if ratio is None or gw is None:
            continue
        state = states.get(("stdio-demo", peer)) or {}
        shares = state.get("continues") and not state.get("isolated")
        if shares:
            print(f"| session per call, named scope: report the ratio (one upstream session shared by all) | "
                  f"{upstream} | {peer} / mcpwatch {ratio:,.1f}x; keeps state per scope: "
                  f"{state_text(state)} | reported |")
        else:
            print(f"| session per call, named scope: ≥ 100x faster than a peer with an upstream session per "
                  f"downstream session | {upstream} | {peer} / mcpwatch {ratio:,.1f}x | "
                  f"{'met' if ratio >= 100 else 'not met'} |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peers_jsonl")
    parser.add_argument("state_jsonl")
    parser.add_argument("--pending", action="append", default=[], metavar="KEY=TEXT")
    args = parser.parse_args()
    res = Results([json.loads(line) for line in open(args.peers_jsonl) if line.strip()])
    states = {}
    try:
        for line in open(args.state_jsonl):
            if line.strip():
                row = json.loads(line)
                states[(row["upstream"], row["path"])] = row["state"]
    except FileNotFoundError:
        pass
    pending = dict(item.split("=", 1) for item in args.pending)
    print("## The gateway against the gateways people use (peers)")
    print()
    for upstream in UPSTREAMS:
        if res.paths(upstream):
            figures_table(res, states, upstream, pending)
            ratios_table(res, upstream)
    targets(res, states)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
