"""The AsyncClient: the same API with await; concurrent threads stay isolated."""

from __future__ import annotations

import asyncio
import json

import pytest

from mcpwatch_client import AsyncClient, ToolError, UnknownServer, scope_for
from mcpwatch_client.testing import AgentProcess


def test_async_calls_in_scopes(mcpwatch_agent: AgentProcess, thread_id: str) -> None:
    async def main() -> None:
        async with mcpwatch_agent.async_client() as client:
            scope = scope_for(thread_id)
            assert (await client.call_tool("demo", "counter", scope=scope)).text == "1"
            again = await client.call_tool("demo", "counter", scope=scope)
            assert (again.text, again.session_reused) == ("2", True)
            tools = await client.list_tools("demo")
            assert "counter" in {tool["name"] for tool in tools}
            sessions = await client.sessions()
            assert scope in {s["scope"] for s in sessions}
            assert any(s["name"] == "demo" for s in await client.servers())
            assert await client.end_thread(thread_id) == 1
            assert scope not in {s["scope"] for s in await client.sessions()}

    asyncio.run(main())


def test_concurrent_threads_keep_their_own_state(
    mcpwatch_agent: AgentProcess, thread_id: str
) -> None:
    threads = [f"{thread_id}-{n}" for n in range(4)]

    async def count(client: AsyncClient, thread: str, times: int) -> list[str]:
        scope = scope_for(thread)
        return [(await client.call_tool("demo", "counter", scope=scope)).text for _ in range(times)]

    async def main() -> None:
        async with mcpwatch_agent.async_client() as client:
            results = await asyncio.gather(
                *(count(client, t, n + 1) for n, t in enumerate(threads))
            )
            assert results == [[str(i) for i in range(1, n + 2)] for n in range(4)]
            closed = await asyncio.gather(*(client.end_thread(t) for t in threads))
            assert closed == [1, 1, 1, 1]

    asyncio.run(main())


def test_async_errors_and_tool_errors(mcpwatch_agent: AgentProcess) -> None:
    async def main() -> None:
        async with mcpwatch_agent.async_client() as client:
            with pytest.raises(UnknownServer) as unknown:
                await client.call_tool("nope", "echo")
            error = unknown.value
            assert (error.status, error.kind, error.not_processed) == (404, "unknown_server", True)
            failed = await client.call_tool("demo", "fail", {"message": "no luck"})
            assert failed.is_error
            assert failed.text == "no luck"
            with pytest.raises(ToolError) as tool_error:
                await client.call_tool("demo", "fail", raise_on_tool_error=True)
            assert tool_error.value.result.is_error
            assert tool_error.value.kind == "tool_error"
            assert not tool_error.value.not_processed

    asyncio.run(main())


def test_a_thread_block_ends_the_thread_async(mcpwatch_agent: AgentProcess, thread_id: str) -> None:
    async def main() -> None:
        async with mcpwatch_agent.async_client() as client:
            async with client.thread(thread_id) as scope:
                result = await client.call_tool("demo", "stats", scope=scope)
                assert json.loads(result.text)["calls"] == 0
                assert scope in {s["scope"] for s in await client.sessions()}
            assert scope not in {s["scope"] for s in await client.sessions()}

    asyncio.run(main())
