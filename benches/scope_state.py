#!/usr/bin/env python3
"""Does an MCP endpoint keep state per scope? (issue 14, "keeps state per scope").

    .test-deps/venv/bin/python benches/scope_state.py --url URL [--tool counter] [--calls 3]

Calls the demo server's `counter` tool (1, 2, 3, ... per upstream session) with one
session per call (`initialize`, the call, `DELETE`: what langchain-mcp-adapters does),
CALLS times in a named scope A, then once in scope B, the scope carried by the
`X-Mcpwatch-Scope` header (a gateway without scopes ignores it). Both scope names are
new on every run. Prints one JSON line:

    {"a": [1, 2, 3], "b": [1], "continues": true, "isolated": true, "keeps_state": true}

`continues`: A's values go up by one from call to call (the scope's upstream session
lives across downstream sessions); `isolated`: B starts at 1 (another scope does not
share A's upstream session). `keeps_state` is both. A failed call prints the error in
`"error"` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

SCOPE_HEADER = "X-Mcpwatch-Scope"


async def one_call(url: str, scope: str, tool: str, timeout: float) -> int:
    """`tool` on a session of its own, in `scope`; its text answer as an int."""
    http_timeout = httpx2.Timeout(timeout, read=timeout)
    async with httpx2.AsyncClient(headers={SCOPE_HEADER: scope}, timeout=http_timeout) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool(tool, {})
    if getattr(result, "is_error", None) or getattr(result, "isError", None):
        raise RuntimeError(f"{tool} returned an error: {result!r}")
    return int(result.content[0].text)


async def probe(args: argparse.Namespace) -> dict:
    run = uuid.uuid4().hex[:8]
    a = [await one_call(args.url, f"state-a-{run}", args.tool, args.timeout) for _ in range(args.calls)]
    b = [await one_call(args.url, f"state-b-{run}", args.tool, args.timeout)]
    continues = all(later == earlier + 1 for earlier, later in zip(a, a[1:]))
    isolated = b == [1]
    return {"a": a, "b": b, "continues": continues, "isolated": isolated,
            "keeps_state": continues and isolated}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", default="counter")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    async def bounded() -> dict:
        with anyio.fail_after(args.timeout * (args.calls + 2)):
            return await probe(args)

    try:
        result = anyio.run(bounded)
    except Exception as error:  # every failure is a result line, not a traceback
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
