#!/usr/bin/env python3
"""SVG charts of the latency distributions measured by scripts/bench.sh.

Python standard library only (no matplotlib), so it runs anywhere bench.sh does.

    python3 benches/charts.py LATENCY_DIR OUT_DIR [--note TEXT] [--label KEY=TEXT ...]

LATENCY_DIR holds one file per measured row and round, named
`<group>__<client>__r<round>.txt`, one call's latency in microseconds per line
(what `mcpwatch bench --latencies`, `raw_rmcp --latencies` and
`benches/python_sdk_client.py --latencies` write). The rounds of one client are
pooled. For every group (e.g. `stdio-everything`) it writes `OUT_DIR/<group>.svg`
with two panels sharing a log-scale latency axis:

* left: the empirical CDF of each client (fraction of calls at most x), a dot at
  the p50;
* right: the tail, the fraction of calls slower than x on a log scale (p90, p99
  and p99.9 read off as 1e-1, 1e-2, 1e-3).

The legend gives each client's calls, p50, p99 and max. The files are plain
SVG 1.1 (no scripts, no external references, white background), so GitHub shows
them inline in Markdown.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from xml.sax.saxutils import escape

# Clients in legend order: (key, default label, colour, dash pattern).
CLIENTS = [
    ("raw-rmcp", "raw rmcp (one session, no pool)", "#1f77b4", ""),
    ("mcpwatch-pooled", "mcpwatch pooled", "#2ca02c", ""),
    ("mcpwatch-telemetry", "mcpwatch pooled, telemetry on", "#2ca02c", "6,3"),
    ("python-sdk", "Python mcp SDK (one session)", "#ff7f0e", ""),
    ("per-call-session", "mcpwatch, one session per call", "#d62728", ""),
    ("library-pooled", "library, pooled (in-process demo server)", "#2ca02c", ""),
    ("agent-api", "through the agent's HTTP API", "#9467bd", ""),
    # The peers section: one client (rmcp), direct and through each gateway.
    ("direct", "direct (no gateway)", "#1f77b4", ""),
    ("gateway", "mcpwatch gateway, /mcp/{server}", "#2ca02c", ""),
    ("gateway-aggregate", "mcpwatch gateway, /mcp", "#2ca02c", "6,3"),
    ("contextforge", "IBM ContextForge", "#d62728", ""),
    ("mcp-proxy", "mcp-proxy", "#ff7f0e", ""),
    ("fastmcp", "fastmcp create_proxy", "#9467bd", ""),
]
EXTRA_COLOURS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

TRANSPORTS = {"stdio": "stdio", "http": "streamable HTTP"}
SERVERS = {
    "everything": "server-everything (Node)",
    "demo": "mcpwatch demo server (Rust)",
}
GROUP_TITLES = {
    "builtin-agent": "builtin demo server, the library vs the agent's HTTP API",
    "peers-stdio-everything": "server-everything over stdio, direct and through gateways",
    "peers-http-demo": "demo server over streamable HTTP, direct and through gateways",
}

FILE_NAME = re.compile(r"^(?P<group>[A-Za-z0-9_.-]+?)__(?P<client>[A-Za-z0-9_.-]+?)__r(?P<round>\d+)\.txt$")

# Layout (pixels).
WIDTH = 1000
PANEL_TOP = 78
PANEL_HEIGHT = 330
MARGIN_LEFT = 70
PANEL_GAP = 80
MARGIN_RIGHT = 25
LEGEND_LINE = 19
PANEL_WIDTH = (WIDTH - MARGIN_LEFT - PANEL_GAP - MARGIN_RIGHT) // 2
CDF_LEVELS = 1000  # ECDF sampled at this many probability levels (exact when fewer calls)


def group_title(group: str) -> str:
    """Human title of a group key such as `http-everything`."""
    if group in GROUP_TITLES:
        return GROUP_TITLES[group]
    transport, _, server = group.partition("-")
    if transport in TRANSPORTS and server in SERVERS:
        return f"{SERVERS[server]} over {TRANSPORTS[transport]}"
    return group


def fmt_us(us: float) -> str:
    """A latency for people: 850 µs, 2.9 ms, 1.2 s."""
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 10_000:
        return f"{us / 1000:.2f} ms"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"
    return f"{us / 1_000_000:.2f} s"


def tick_label(us: float) -> str:
    """Axis tick label for a 1-2-5 value in microseconds."""
    if us < 1000:
        return f"{us:g} µs"
    if us < 1_000_000:
        return f"{us / 1000:g} ms"
    return f"{us / 1_000_000:g} s"


def nearest_rank(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile, the rule `mcpwatch bench` uses."""
    rank = math.ceil(len(ordered) * q)
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def read_latencies(directory: str) -> dict[str, dict[str, list[int]]]:
    """{group: {client: sorted latencies of all rounds}} from the files in `directory`."""
    groups: dict[str, dict[str, list[int]]] = {}
    for name in sorted(os.listdir(directory)):
        match = FILE_NAME.match(name)
        if not match:
            continue
        values = []
        with open(os.path.join(directory, name)) as f:
            for line in f:
                line = line.strip()
                if line:
                    values.append(max(int(line), 1))  # log axis: 0 µs shown as 1 µs
        if values:
            clients = groups.setdefault(match["group"], {})
            clients.setdefault(match["client"], []).extend(values)
    for clients in groups.values():
        for values in clients.values():
            values.sort()
    return groups


class LogAxis:
    """A log10 scale from `lo` to `hi` (whole decades) onto `length` pixels."""

    def __init__(self, lo: float, hi: float, length: float, reverse: bool = False):
        self.lo = math.floor(math.log10(lo))
        self.hi = max(math.ceil(math.log10(hi)), self.lo + 1)
        self.length = length
        self.reverse = reverse

    def __call__(self, value: float) -> float:
        frac = (math.log10(value) - self.lo) / (self.hi - self.lo)
        return self.length * (1 - frac if self.reverse else frac)

    def decades(self) -> range:
        return range(self.lo, self.hi + 1)


def svg_text(x: float, y: float, text: str, size: int = 12, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def x_axis(out: list[str], x0: float, y0: float, xs: LogAxis, height: float) -> None:
    """Vertical grid lines and labels of the shared latency axis under a panel."""
    for decade in xs.decades():
        for mult in range(1, 10):
            value = mult * 10.0**decade
            if decade == xs.hi and mult > 1:
                break
            x = x0 + xs(value)
            major = mult == 1
            labelled = mult in (1, 2, 5)
            colour = "#bbbbbb" if major else "#e6e6e6"
            out.append(
                f'<line x1="{x:.1f}" y1="{y0:.1f}" x2="{x:.1f}" y2="{y0 + height:.1f}" stroke="{colour}" stroke-width="1"/>'
            )
            out.append(
                f'<line x1="{x:.1f}" y1="{y0 + height:.1f}" x2="{x:.1f}" y2="{y0 + height + (6 if major else 3):.1f}" stroke="#333333"/>'
            )
            if labelled and (major or xs.hi - xs.lo <= 4):
                out.append(svg_text(x, y0 + height + 18, tick_label(value), 10 if not major else 11, "middle"))
    out.append(svg_text(x0 + PANEL_WIDTH / 2, y0 + height + 38, "latency per call (log scale)", 12, "middle"))


def frame(out: list[str], x0: float, y0: float) -> None:
    out.append(
        f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#333333" stroke-width="1"/>'
    )


def cdf_points(values: list[int]) -> list[tuple[int, float]]:
    """(latency, fraction of calls at most latency) at up to CDF_LEVELS probability levels."""
    n = len(values)
    levels = min(n, CDF_LEVELS)
    points = [(values[0], 0.0)]
    for k in range(1, levels + 1):
        q = k / levels
        points.append((nearest_rank(values, q), q))
    return points


def tail_points(values: list[int]) -> list[tuple[int, float]]:
    """(latency, fraction of calls slower than latency), exact, at each distinct latency."""
    n = len(values)
    points = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[j + 1] == values[i]:
            j += 1
        slower = n - (j + 1)
        if slower > 0:
            points.append((values[i], slower / n))
        i = j + 1
    # Thin the body (>1% slower) to every ~1/500 of the calls; keep the tail exact.
    thinned, last = [], None
    for value, frac in points:
        if frac < 0.01 or last is None or last - frac >= 0.002:
            thinned.append((value, frac))
            last = frac
    return thinned


def step_path(points: list[tuple[float, float]], x0: float, y0: float, xs: LogAxis, ys) -> str:
    """SVG path of a right-continuous step function through `points` (x ascending)."""
    parts = []
    previous_y = None
    for value, frac in points:
        x = x0 + xs(value)
        y = y0 + ys(frac)
        if previous_y is None:
            parts.append(f"M{x:.1f},{y:.1f}")
        else:
            parts.append(f"H{x:.1f}V{y:.1f}")
        previous_y = y
    return "".join(parts)


def chart(group: str, clients: dict[str, list[int]], labels: dict[str, str], note: str) -> str:
    """The SVG document for one group."""
    order = [key for key, *_ in CLIENTS if key in clients] + sorted(k for k in clients if k not in dict((c[0], c) for c in CLIENTS))
    style = {key: (label, colour, dash) for key, label, colour, dash in CLIENTS}
    extra = iter(EXTRA_COLOURS * 4)
    for key in order:
        if key not in style:
            style[key] = (key, next(extra), "")
    lo = min(values[0] for values in clients.values())
    hi = max(values[-1] for values in clients.values())
    xs = LogAxis(lo, hi, PANEL_WIDTH)
    n_max = max(len(values) for values in clients.values())
    tail_lo = 10.0 ** math.floor(math.log10(1 / n_max)) if n_max > 1 else 0.1
    tail_axis = LogAxis(tail_lo, 1.0, PANEL_HEIGHT, reverse=True)

    legend_top = PANEL_TOP + PANEL_HEIGHT + 62
    height = legend_top + LEGEND_LINE * (len(order) + 1) + 10
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" fill="#222222">',
        f"<title>{escape('Latency distribution: ' + group_title(group))}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        svg_text(WIDTH / 2, 26, f"Sequential tools/call latency: {group_title(group)}", 17, "middle", ' font-weight="bold"'),
        svg_text(WIDTH / 2, 46, note, 11, "middle", ' fill="#555555"') if note else "",
    ]

    # Left panel: ECDF, linear y.
    lx, ty = MARGIN_LEFT, PANEL_TOP
    out.append(svg_text(lx + PANEL_WIDTH / 2, ty - 10, "CDF: fraction of calls at most x (dot: p50)", 12, "middle"))
    for i in range(11):
        frac = i / 10
        y = ty + PANEL_HEIGHT * (1 - frac)
        colour = "#bbbbbb" if i in (0, 5, 10) else "#e6e6e6"
        out.append(f'<line x1="{lx}" y1="{y:.1f}" x2="{lx + PANEL_WIDTH}" y2="{y:.1f}" stroke="{colour}"/>')
        out.append(f'<line x1="{lx - 5}" y1="{y:.1f}" x2="{lx}" y2="{y:.1f}" stroke="#333333"/>')
        out.append(svg_text(lx - 8, y + 4, f"{frac:.1f}", 11, "end"))
    x_axis(out, lx, ty, xs, PANEL_HEIGHT)
    out.append(
        svg_text(18, ty + PANEL_HEIGHT / 2, "fraction of calls", 12, "middle", f' transform="rotate(-90 18 {ty + PANEL_HEIGHT / 2:.1f})"')
    )

    # Right panel: tail, log y.
    rx = MARGIN_LEFT + PANEL_WIDTH + PANEL_GAP
    out.append(svg_text(rx + PANEL_WIDTH / 2, ty - 10, "tail: fraction of calls slower than x", 12, "middle"))
    for exponent in range(round(math.log10(tail_lo)), 1):
        frac = 10.0**exponent
        y = ty + tail_axis(frac)
        out.append(f'<line x1="{rx}" y1="{y:.1f}" x2="{rx + PANEL_WIDTH}" y2="{y:.1f}" stroke="#bbbbbb"/>')
        out.append(f'<line x1="{rx - 5}" y1="{y:.1f}" x2="{rx}" y2="{y:.1f}" stroke="#333333"/>')
        names = {0: "1", -1: "0.1 (p90)", -2: "0.01 (p99)", -3: "1e-3 (p99.9)"}
        out.append(svg_text(rx - 8, y + 4, names.get(exponent, f"1e{exponent}"), 10, "end"))
    x_axis(out, rx, ty, xs, PANEL_HEIGHT)

    # Curves, clipped to their panels.
    out.append(
        f'<defs><clipPath id="left"><rect x="{lx}" y="{ty - 2}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT + 4}"/></clipPath>'
        f'<clipPath id="right"><rect x="{rx}" y="{ty - 2}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT + 4}"/></clipPath></defs>'
    )
    for key in order:
        values = clients[key]
        _, colour, dash = style[key]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        path = step_path(cdf_points(values), lx, ty, xs, lambda f: PANEL_HEIGHT * (1 - f))
        out.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr} clip-path="url(#left)"/>'
        )
        p50 = nearest_rank(values, 0.5)
        out.append(
            f'<circle cx="{lx + xs(p50):.1f}" cy="{ty + PANEL_HEIGHT * 0.5:.1f}" r="4.5" fill="{colour}" stroke="#ffffff" stroke-width="1.5"/>'
        )
        tail = tail_points(values)
        if tail:
            path = step_path(tail, rx, ty, xs, tail_axis)
            out.append(
                f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr} clip-path="url(#right)"/>'
            )
    frame(out, lx, ty)
    frame(out, rx, ty)

    # Legend under the panels.
    columns = [MARGIN_LEFT + 40, 560, 660, 760, 860]
    y = legend_top
    for x, head in zip(columns[1:], ["calls", "p50", "p99", "max"]):
        out.append(svg_text(x + 70, y, head, 11, "end", ' font-weight="bold"'))
    for key in order:
        y += LEGEND_LINE
        values = clients[key]
        label, colour, dash = style[key]
        label = labels.get(key, label)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y - 4}" x2="{MARGIN_LEFT + 30}" y2="{y - 4}" stroke="{colour}" stroke-width="3"{dash_attr}/>'
        )
        out.append(svg_text(columns[0], y, label, 12))
        stats = [f"{len(values):,}", fmt_us(nearest_rank(values, 0.5)), fmt_us(nearest_rank(values, 0.99)), fmt_us(values[-1])]
        for x, text in zip(columns[1:], stats):
            out.append(svg_text(x + 70, y, text, 12, "end"))
    out.append("</svg>")
    return "\n".join(line for line in out if line) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("latency_dir", help="directory of <group>__<client>__r<round>.txt files")
    parser.add_argument("out_dir", help="where to write <group>.svg")
    parser.add_argument("--note", default="", help="subtitle (machine, calls, rounds)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=TEXT", help="legend label of a client key")
    args = parser.parse_args()
    labels = {}
    for item in args.label:
        key, sep, text = item.partition("=")
        if not sep:
            parser.error(f"--label wants KEY=TEXT, got {item!r}")
        labels[key] = text
    groups = read_latencies(args.latency_dir)
    if not groups:
        print(f"charts.py: no latency files in {args.latency_dir}", file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    for group, clients in sorted(groups.items()):
        path = os.path.join(args.out_dir, f"{group}.svg")
        with open(path, "w", encoding="utf-8") as out:
            out.write(chart(group, clients, labels, args.note))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
