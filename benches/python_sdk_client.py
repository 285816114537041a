#!/usr/bin/env python3
"""The Python `mcp` SDK row of mcpwatch's head-to-head benchmarks.

One persistent `ClientSession` (the official Python SDK, `mcp` on PyPI, 2.x),
20 warm-up calls, then N sequential calls of one tool. Prints exactly one JSON
line with the same keys as `mcpwatch bench --json`:
calls, errors, p50_us, p90_us, p99_us, max_us, calls_per_s.

Same command-line shape as examples/raw_rmcp.rs:

    python benches/python_sdk_client.py --tool echo --args '{"message":"hi"}' --calls 2000 -- node everything.js stdio
    python benches/python_sdk_client.py --tool echo --args '{"message":"hi"}' --calls 2000 --http http://127.0.0.1:3001/mcp

With `--latencies FILE`, every measured call's latency (microseconds, integer)
is written to FILE, one per line, in call order.

Run it with the venv that scripts/install-test-deps.sh builds
(.test-deps/venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

WARMUP_CALLS = 20


def summarize(latencies: list[int], errors: int, elapsed: float) -> dict[str, Any]:
    """Nearest-rank percentiles, the same rule as `mcpwatch::testing::summarize`."""
    ordered = sorted(latencies)

    def at(q: float) -> int:
        if not ordered:
            return 0
        rank = math.ceil(len(ordered) * q)
        return ordered[min(max(rank, 1), len(ordered)) - 1]

    calls = len(ordered)
    return {
        "calls": calls,
        "errors": errors,
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "max_us": ordered[-1] if ordered else 0,
        "calls_per_s": calls / elapsed if elapsed > 0 else 0.0,
    }


@asynccontextmanager
async def open_streams(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Any]]:
    """The transport's (read, write) stream pair: streamable HTTP or a spawned stdio server."""
    if args.http:
        async with streamable_http_client(args.http) as (read, write):
            yield read, write
    else:
        if not args.command:
            raise SystemExit("give --http URL or a command after --")
        params = StdioServerParameters(command=args.command[0], args=args.command[1:])
        with open(os.devnull, "w") as devnull:
            async with stdio_client(params, errlog=devnull) as (read, write):
                yield read, write


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Opens the session, warms up, measures `args.calls` sequential calls."""
    arguments = json.loads(args.args) if args.args else None
    if arguments is not None and not isinstance(arguments, dict):
        raise SystemExit("--args must be a JSON object")
    async with open_streams(args) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(WARMUP_CALLS):
                await session.call_tool(args.tool, arguments)
            latencies: list[int] = []
            errors = 0
            clock = time.perf_counter_ns
            started = clock()
            for _ in range(args.calls):
                call_started = clock()
                try:
                    result = await session.call_tool(args.tool, arguments)
                    if result.is_error:
                        errors += 1
                except Exception:  # a failed call counts, like the Rust clients
                    errors += 1
                latencies.append((clock() - call_started) // 1000)
            elapsed = (clock() - started) / 1e9
    if args.latencies:
        with open(args.latencies, "w") as out:
            out.write("".join(f"{us}\n" for us in latencies))
    return summarize(latencies, errors, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description="Python mcp SDK benchmark client")
    parser.add_argument("--tool", required=True, help="tool to call")
    parser.add_argument("--args", help="tool arguments (a JSON object)")
    parser.add_argument("--calls", type=int, default=1000, help="calls to measure after 20 warm-up calls")
    parser.add_argument("--http", help="streamable-HTTP endpoint; otherwise the command after -- is spawned (stdio)")
    parser.add_argument("--latencies", help="write every measured call's latency (µs), one per line, to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the stdio server command, after --")
    args = parser.parse_args()
    # The SDK logs teardown chatter (e.g. a DELETE answered 202) as warnings; keep stderr for errors.
    logging.getLogger("mcp").setLevel(logging.ERROR)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    report = anyio.run(run, args)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
