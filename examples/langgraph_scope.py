#!/usr/bin/env python3
"""Keep a stateful MCP server's state per LangGraph thread, through mcpwatch's gateway.

langchain-mcp-adapters opens a new MCP session for every tool call (its default,
``session=None``), so a stateful server (a browser, a REPL, the demo ``counter``) forgets
everything between the steps of a thread. Point the adapters at mcpwatch's gateway and add
this interceptor: it sends the thread id as the ``X-Mcpwatch-Scope`` header, and mcpwatch
keeps one pooled upstream session per (server, thread), however many downstream sessions
the adapters open and close.

    pip install langchain-mcp-adapters==0.3.2 langgraph
    mcpwatch serve                                   # with [gateway] enabled = true
    python3 examples/langgraph_scope.py http://127.0.0.1:8080/mcp/demo

Tested by tests/gateway_clients/langgraph_threads.py (two threads, interleaved calls).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.interceptors import MCPToolCallRequest, MCPToolCallResult


async def mcpwatch_scope(
    request: MCPToolCallRequest,
    handler: Callable[[MCPToolCallRequest], Awaitable[MCPToolCallResult]],
) -> MCPToolCallResult:
    """Tool interceptor: the LangGraph thread id becomes the mcpwatch scope of the call."""
    config = getattr(request.runtime, "config", None) or {}
    thread_id = config.get("configurable", {}).get("thread_id")
    if thread_id is not None:
        request = request.override(
            headers={**(request.headers or {}), "X-Mcpwatch-Scope": str(thread_id)}
        )
    return await handler(request)


async def main(url: str) -> None:
    client = MultiServerMCPClient(
        {"demo": {"transport": "streamable_http", "url": url}},
        tool_interceptors=[mcpwatch_scope],
    )
    tools = await client.get_tools()  # give these to your agent, e.g. ToolNode(tools)
    print("tools:", ", ".join(tool.name for tool in tools))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp/demo"))
