#!/usr/bin/env python3
"""Drive an MCP server with the Python `mcp` 2.x high-level `Client`, unmodified.

Run with .test-deps/venv/bin/python (mcp 2.3.0). `--mode legacy` does the initialize
handshake; `--mode auto` (the SDK's default) probes `server/discover` first and falls
back to initialize on a server that does not answer it.

Scenarios (the last stdout line is one JSON object; exit 1 with a reason on stderr):
  basic       list tools, call echo, call counter twice
              {"client", "mode", "scenario", "protocol_version", "server_name",
               "tools", "echo", "counter": [a, b]}
  counter     call counter once
              {"client", "mode", "scenario", "protocol_version", "server_name", "counter": n}
  everything  against server-everything: every tool, resource, template and prompt, with
              progress, sampling, elicitation, roots, logging, subscriptions and list_changed
              (see everything_scenario.py for the JSON shape)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import common
import httpx2
import mcp_types as types
from everything_scenario import Observed, run_everything
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

CLIENT_NAME = "py2"
# The everything scenario uses logging/setLevel and resources/subscribe on purpose (legacy
# connections); the SDK flags them as removed in 2026-07-28.
warnings.filterwarnings("ignore", message=".*(deprecated|removed) as of 2026-07-28.*")


def add_mode(parser: Any) -> None:
    parser.add_argument(
        "--mode",
        choices=["legacy", "auto"],
        default="legacy",
        help="the Client's connect mode (default legacy)",
    )


class Callbacks:
    """Canned answers to the server's requests, and a record of what the server sent."""

    def __init__(self) -> None:
        self.observed = Observed()

    async def sampling(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.observed.sampling_requests += 1
        return types.CreateMessageResult(
            role="assistant",
            model="canned-model",
            stop_reason="endTurn",
            content=types.TextContent(type="text", text="canned sampling answer"),
        )

    async def elicitation(
        self, context: Any, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.observed.elicitation_requests += 1
        if getattr(params, "mode", None) == "url":
            return types.ElicitResult(action="accept")
        schema = getattr(params, "requested_schema", None) or {}
        if not isinstance(schema, dict):
            schema = schema.model_dump(by_alias=True, exclude_none=True)
        return types.ElicitResult(action="accept", content=common.canned_form(schema))

    async def roots(self, context: Any) -> types.ListRootsResult:
        self.observed.roots_requests += 1
        return types.ListRootsResult(
            roots=[types.Root(uri="file:///tmp/canned-root", name="canned")]
        )

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.observed.log_messages += 1

    async def messages(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method is not None:
            self.observed.notifications.append(method)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.observed.progress.append([progress, total])


async def basic(client: Client, result: dict[str, Any]) -> None:
    tools = await client.list_tools()
    result["tools"] = sorted(tool.name for tool in tools.tools)
    echoed = await client.call_tool(common.tool("echo"), {"message": "hello gateway"})
    result["echo"] = common.text_of(echoed)
    if result["echo"] != "hello gateway":
        raise common.ScenarioFailed(f"echo answered {result['echo']!r}")
    result["counter"] = [
        common.counter_value(await client.call_tool(common.tool("counter"), {})) for _ in range(2)
    ]


async def counter(client: Client, result: dict[str, Any]) -> None:
    result["counter"] = common.counter_value(await client.call_tool(common.tool("counter"), {}))


async def run(args: Any) -> dict[str, Any]:
    callbacks = Callbacks()
    result: dict[str, Any] = {"client": CLIENT_NAME, "mode": args.mode, "scenario": args.scenario}
    timeout = httpx2.Timeout(args.timeout, read=args.timeout)
    async with httpx2.AsyncClient(
        headers=common.scope_headers(args.scope), timeout=timeout
    ) as http:
        client = Client(
            streamable_http_client(args.url, http_client=http),
            mode=args.mode,
            read_timeout_seconds=args.timeout,
            sampling_callback=callbacks.sampling,
            elicitation_callback=callbacks.elicitation,
            list_roots_callback=callbacks.roots,
            logging_callback=callbacks.logging,
            message_handler=callbacks.messages,
        )
        async with client:
            result["protocol_version"] = client.protocol_version
            result["server_name"] = client.server_info.name if client.server_info else None
            if args.scenario == "basic":
                await basic(client, result)
            elif args.scenario == "counter":
                await counter(client, result)
            else:
                result.update(
                    await run_everything(client, callbacks.observed, callbacks.progress, args.mode)
                )
    return result


def main() -> None:
    args = common.parse_args(
        __doc__.splitlines()[1], ["basic", "counter", "everything"], extra=add_mode
    )

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
    failures = result.get("failures")
    common.emit(result)
    if failures:
        common.fail(f"{CLIENT_NAME} {args.scenario}: {len(failures)} check(s) failed: {failures}")


if __name__ == "__main__":
    main()
