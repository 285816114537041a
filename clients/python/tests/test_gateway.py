"""Gateway helpers on real HTTP requests to the agent, whose /v1 API already takes the scope
from X-Mcpwatch-Scope (the gateway endpoint itself arrives with the gateway issue).

langchain-mcp-adapters is not installed (it pins the other MCP SDK major). Its tool
shape is reproduced below as it is in langchain-mcp-adapters 0.3.2: a coroutine with a
``runtime`` parameter that ToolNode fills, an ``MCPToolCallRequest`` passed through the
interceptors, and a handler that opens a session with the request's headers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any

import httpx
import httpx2
import pytest
from conftest import scopes_of
from graphs import DONE, GO, ScriptedModel, agent_graph, calls, thread, tool_messages
from langchain_core.tools import InjectedToolArg, StructuredTool, tool

from mcpwatch_client import Client, gateway, scope_for
from mcpwatch_client.gateway import (
    SCOPE_HEADER,
    ScopeAuth,
    deerflow_scope,
    scope_header,
    scope_header_interceptor,
)
from mcpwatch_client.testing import AgentProcess


@dataclasses.dataclass
class MCPToolCallRequest:
    """langchain_mcp_adapters.interceptors.MCPToolCallRequest (0.3.2), fields and override()."""

    name: str
    args: dict[str, Any]
    server_name: str
    headers: dict[str, Any] | None = None
    runtime: object | None = None

    def override(self, **overrides: Any) -> MCPToolCallRequest:
        return dataclasses.replace(self, **overrides)


def adapter_tool(api: str, interceptor: Any, sent: list[dict[str, Any]]) -> StructuredTool:
    """The demo `counter` as langchain-mcp-adapters builds a tool, with one interceptor."""

    async def call_tool(
        runtime: Annotated[object | None, InjectedToolArg()] = None, **arguments: Any
    ) -> str:
        request = MCPToolCallRequest("counter", arguments, "demo", runtime=runtime)

        async def handler(request: MCPToolCallRequest) -> str:
            sent.append(dict(request.headers or {}))
            async with httpx.AsyncClient(headers=request.headers or {}) as session:
                answer = await session.post(
                    f"{api}/v1/tools/call",
                    json={"server": request.server_name, "tool": request.name, "arguments": {}},
                )
            return str(answer.json()["result"]["content"][0]["text"])

        return str(await interceptor(request, handler))

    return StructuredTool(
        name="counter",
        description="counts",
        args_schema={"type": "object", "properties": {}},
        coroutine=call_tool,
    )


def test_the_interceptor_scopes_each_thread(
    mcpwatch_agent: AgentProcess, client: Client, thread_id: str
) -> None:
    sent: list[dict[str, Any]] = []
    model = ScriptedModel()
    graph = agent_graph(model, [adapter_tool(mcpwatch_agent.api, scope_header, sent)])

    async def run(thread_id: str, times: int) -> list[str]:
        model.script(*[calls("counter", ids=[f"c{n}"]) for n in range(times)], DONE)
        return [str(m.content) for m in tool_messages(await graph.ainvoke(GO, thread(thread_id)))]

    a, b = f"{thread_id} a", f"{thread_id} b"  # awkward ids: hashed
    assert asyncio.run(run(a, 2)) == ["1", "2"]
    assert asyncio.run(run(b, 1)) == ["1"]
    assert [h[SCOPE_HEADER] for h in sent] == [scope_for(a)] * 2 + [scope_for(b)]
    assert {scope_for(a), scope_for(b)} <= scopes_of(client)
    assert client.end_thread(a) + client.end_thread(b) == 2


def test_the_interceptor_keeps_other_headers_and_uses_the_namespace() -> None:
    seen: list[MCPToolCallRequest] = []

    async def handler(request: MCPToolCallRequest) -> str:
        seen.append(request)
        return "ok"

    @dataclasses.dataclass
    class Runtime:  # the ToolRuntime attributes the interceptor reads
        context: dict[str, Any] | None = None
        config: dict[str, Any] = dataclasses.field(
            default_factory=lambda: {"configurable": {"thread_id": "conv-1"}}
        )

    interceptor = scope_header_interceptor("alice")
    request = MCPToolCallRequest("t", {}, "s", headers={"Authorization": "x"}, runtime=Runtime())
    assert asyncio.run(interceptor(request, handler)) == "ok"
    assert seen[0].headers == {"Authorization": "x", SCOPE_HEADER: "alice:conv-1"}
    assert request.headers == {"Authorization": "x"}, "the original request is unchanged"

    outside = MCPToolCallRequest("t", {}, "s")
    asyncio.run(interceptor(outside, handler))
    assert seen[1] is outside, "no thread: passed on as it is"


def test_deerflow_prefers_the_runtime_context(mcpwatch_agent: AgentProcess, client: Client) -> None:
    sent: list[dict[str, Any]] = []
    interceptor = deerflow_scope()
    assert callable(interceptor)
    model = ScriptedModel()
    graph = agent_graph(model, [adapter_tool(mcpwatch_agent.api, interceptor, sent)])
    model.script(calls("counter"), DONE)
    asyncio.run(graph.ainvoke(GO, thread("df-config"), context={"thread_id": "df-context"}))
    assert sent == [{SCOPE_HEADER: "df-context"}]
    assert client.end_thread("df-context") == 1


def auth_tool(api: str, auth: Any) -> Any:
    @tool
    def counter() -> str:
        """The demo counter through an httpx2 client with ScopeAuth."""
        with httpx2.Client(auth=auth) as http:
            answer = http.post(f"{api}/v1/tools/call", json={"server": "demo", "tool": "counter"})
        return str(answer.json()["result"]["content"][0]["text"])

    return counter


def test_scope_auth_in_a_sync_graph(
    mcpwatch_agent: AgentProcess, client: Client, thread_id: str
) -> None:
    model = ScriptedModel()
    graph = agent_graph(model, [auth_tool(mcpwatch_agent.api, ScopeAuth(namespace="n"))])
    for expected in ("1", "2"):
        model.script(calls("counter"), DONE)
        assert tool_messages(graph.invoke(GO, thread(thread_id)))[-1].content == expected
    assert f"n:{thread_id}" in scopes_of(client)
    assert client.end_thread(thread_id, "n") == 1


def test_scope_auth_on_one_async_client_shared_by_concurrent_threads(
    mcpwatch_agent: AgentProcess, client: Client, thread_id: str
) -> None:
    threads = [f"{thread_id}-{n}" for n in range(3)]

    async def main() -> list[list[str]]:
        async with httpx2.AsyncClient(auth=ScopeAuth()) as shared:

            @tool
            async def counter() -> str:
                """The demo counter through one shared httpx2 client."""
                answer = await shared.post(
                    f"{mcpwatch_agent.api}/v1/tools/call",
                    json={"server": "demo", "tool": "counter"},
                )
                return str(answer.json()["result"]["content"][0]["text"])

            async def run(thread_id: str, times: int) -> list[str]:
                model = ScriptedModel()
                model.script(*[calls("counter", ids=[f"c{n}"]) for n in range(times)], DONE)
                state = await agent_graph(model, [counter]).ainvoke(GO, thread(thread_id))
                return [str(m.content) for m in tool_messages(state)]

            return await asyncio.gather(*(run(t, n + 1) for n, t in enumerate(threads)))

    assert asyncio.run(main()) == [["1"], ["1", "2"], ["1", "2", "3"]]
    assert [client.end_thread(t) for t in threads] == [1, 1, 1]


def test_scope_auth_with_a_fixed_scope_and_outside_a_run(mcpwatch_agent: AgentProcess) -> None:
    with httpx2.Client(auth=ScopeAuth("fixed-scope")) as http:
        request = http.build_request("GET", f"{mcpwatch_agent.api}/v1/servers")
        response = http.send(request)
        assert response.request.headers[SCOPE_HEADER] == "fixed-scope"
    with httpx2.Client(auth=ScopeAuth()) as http:
        response = http.get(f"{mcpwatch_agent.api}/v1/servers")
        assert SCOPE_HEADER not in response.request.headers


def test_an_unknown_gateway_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = gateway.NoSuchThing
