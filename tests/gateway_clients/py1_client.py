#!/usr/bin/env python3
"""Drive an MCP server with the Python `mcp` 1.x `ClientSession` over streamable HTTP, unmodified.

Run with .test-deps/venv-mcp1/bin/python (mcp 1.30.0). The transport is
`streamable_http_client` with an httpx client carrying the headers (what
langchain-mcp-adapters 0.3.2 does); `--helper streamablehttp_client` uses the older
helper instead (deprecated in 1.30, still in much user code), which takes `headers=`.

Scenarios (the last stdout line is one JSON object; exit 1 with a reason on stderr):
  basic    list tools, call echo, call counter twice
           {"client", "helper", "scenario", "protocol_version", "server_name", "session_id",
            "tools", "echo", "counter": [a, b]}
  counter  call counter once
           {"client", "helper", "scenario", "protocol_version", "server_name", "session_id",
            "counter": n}
"""

from __future__ import annotations

import sys
import warnings
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import common
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client, streamablehttp_client

CLIENT_NAME = "py1"
HELPERS = ("streamable_http_client", "streamablehttp_client")
warnings.filterwarnings("ignore", message="Use `streamable_http_client` instead.")


def add_helper(parser: Any) -> None:
    parser.add_argument(
        "--helper",
        choices=HELPERS,
        default=HELPERS[0],
        help="which transport helper of mcp 1.x to use (default streamable_http_client)",
    )


@asynccontextmanager
async def transport(args: Any):
    """The (read, write, get_session_id) triple of the chosen helper, headers included."""
    headers = common.scope_headers(args.scope)
    if args.helper == "streamablehttp_client":
        async with streamablehttp_client(
            args.url, headers=headers, timeout=args.timeout, sse_read_timeout=args.timeout
        ) as streams:
            yield streams
        return
    timeout = httpx.Timeout(args.timeout, read=args.timeout)
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(args.url, http_client=http) as streams,
    ):
        yield streams


async def run(args: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "client": CLIENT_NAME,
        "helper": args.helper,
        "scenario": args.scenario,
    }
    async with (
        transport(args) as (read, write, get_session_id),
        ClientSession(read, write, read_timeout_seconds=timedelta(seconds=args.timeout)) as session,
    ):
        initialized = await session.initialize()
        result["protocol_version"] = str(initialized.protocolVersion)
        result["server_name"] = initialized.serverInfo.name
        result["session_id"] = get_session_id()
        if args.scenario == "basic":
            tools = await session.list_tools()
            result["tools"] = sorted(tool.name for tool in tools.tools)
            result["echo"] = common.text_of(
                await session.call_tool("echo", {"message": "hello gateway"})
            )
            if result["echo"] != "hello gateway":
                raise common.ScenarioFailed(f"echo answered {result['echo']!r}")
            result["counter"] = [
                common.counter_value(await session.call_tool("counter", {})) for _ in range(2)
            ]
        else:
            result["counter"] = common.counter_value(await session.call_tool("counter", {}))
    return result


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[1], ["basic", "counter"], extra=add_helper)

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args)

    try:
        result = anyio.run(bounded)
    except TimeoutError as error:
        common.fail(
            f"{CLIENT_NAME} {args.scenario} did not finish within {args.timeout:g} s", error
        )
    except Exception as error:
        common.debug_traceback(error)
        common.fail(f"{CLIENT_NAME} {args.scenario} against {args.url}", error)
    common.emit(result)


if __name__ == "__main__":
    main()
