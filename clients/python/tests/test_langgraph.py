"""LangGraph graphs (ToolNode + a scripted fake model) calling tools through the real agent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest
from conftest import scopes_of, stats
from dropping_proxy import DroppingProxy
from graphs import DONE, GO, ScriptedModel, agent_graph, calls, thread, tool_messages
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.types import RetryPolicy

from mcpwatch_client import AgentUnreachable, AsyncClient, Client, Timeout, scope_for
from mcpwatch_client.langchain import aload_tools, load_tools
from mcpwatch_client.testing import AgentProcess


@pytest.fixture
def proxy(mcpwatch_agent: AgentProcess) -> Iterator[DroppingProxy]:
    with DroppingProxy(mcpwatch_agent.api) as proxy:
        yield proxy


def test_two_threads_keep_separate_state(client: Client, thread_id: str) -> None:
    model = ScriptedModel()
    graph = agent_graph(model, load_tools(client, "demo", include=["counter"]))
    a, b = f"{thread_id}-a", f"{thread_id}-b"

    model.script(calls("counter"), calls("counter", ids=["call-2"]), DONE)
    state = graph.invoke(GO, thread(a))
    assert [m.content for m in tool_messages(state)] == ["1", "2"]

    model.script(calls("counter"), DONE)  # the same tool-call id as thread A's first
    assert [m.content for m in tool_messages(graph.invoke(GO, thread(b)))] == ["1"]

    model.script(calls("counter"), DONE)  # a later turn of A, ids repeated
    assert [m.content for m in tool_messages(graph.invoke(GO, thread(a)))][-1] == "3"
    assert {scope_for(a), scope_for(b)} <= scopes_of(client)

    assert client.end_thread(a) == 1
    model.script(calls("counter"), DONE)
    assert [m.content for m in tool_messages(graph.invoke(GO, thread(a)))][-1] == "1"
    assert client.end_thread(a) + client.end_thread(b) == 2


def test_async_graphs_on_concurrent_threads(mcpwatch_agent: AgentProcess, thread_id: str) -> None:
    threads = [f"{thread_id}-{n}" for n in range(3)]

    async def run(client_tools: Sequence[BaseTool], thread_id: str, times: int) -> list[str]:
        model = ScriptedModel()
        model.script(*[calls("counter", ids=[f"c{n}"]) for n in range(times)], DONE)
        state = await agent_graph(model, client_tools).ainvoke(GO, thread(thread_id))
        return [str(m.content) for m in tool_messages(state)]

    async def main() -> None:
        async with mcpwatch_agent.async_client() as client:
            tools = await aload_tools(client, "demo", include=["counter"])
            results = await asyncio.gather(*(run(tools, t, n + 1) for n, t in enumerate(threads)))
            assert results == [["1"], ["1", "2"], ["1", "2", "3"]]
            assert [await client.end_thread(t) for t in threads] == [1, 1, 1]

    asyncio.run(main())


def test_a_retry_policy_rerun_after_a_dropped_connection_runs_the_tool_once(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    with Client(proxy.url, retries=0) as through_proxy:  # no transport retry: LangGraph's turn
        model = ScriptedModel()
        retry = RetryPolicy(retry_on=AgentUnreachable, max_attempts=3, initial_interval=0.01)
        graph = agent_graph(model, load_tools(through_proxy, "demo"), retry=retry)
        model.script(calls("counter"), DONE)
        proxy.drop_answers(1)
        state = graph.invoke(GO, thread(thread_id))
    assert proxy.dropped == 1, "the first answer was lost"
    assert [m.content for m in tool_messages(state)] == ["1"]
    assert stats(client, scope_for(thread_id)) == {"calls": 1, "cancelled": 0, "counter": 1}
    client.end_thread(thread_id)


def test_async_retry_policy_rerun_runs_the_tool_once(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    async def main() -> list[ToolMessage]:
        async with AsyncClient(proxy.url, retries=0) as through_proxy:
            model = ScriptedModel()
            retry = RetryPolicy(retry_on=AgentUnreachable, max_attempts=3, initial_interval=0.01)
            tools = await aload_tools(through_proxy, "demo")
            graph = agent_graph(model, tools, retry=retry)
            model.script(calls("counter"), DONE)
            proxy.drop_answers(1)
            return tool_messages(await graph.ainvoke(GO, thread(thread_id)))

    assert [m.content for m in asyncio.run(main())] == ["1"]
    assert proxy.dropped == 1
    assert stats(client, scope_for(thread_id))["calls"] == 1
    client.end_thread(thread_id)


def test_a_resume_from_the_checkpoint_joins_the_first_call(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    with Client(proxy.url, retries=0) as through_proxy:
        model = ScriptedModel()
        graph = agent_graph(model, load_tools(through_proxy, "demo"))  # no RetryPolicy
        model.script(calls("counter"), DONE)
        proxy.drop_answers(1)
        with pytest.raises(AgentUnreachable):
            graph.invoke(GO, thread(thread_id))
        assert graph.get_state(thread(thread_id)).next == ("tools",)
        state = graph.invoke(None, thread(thread_id))  # resume where it stopped
    assert [m.content for m in tool_messages(state)] == ["1"]
    assert stats(client, scope_for(thread_id))["calls"] == 1, "the resumed step did not run again"
    client.end_thread(thread_id)


def test_is_error_reaches_the_model_as_an_error_message(client: Client, thread_id: str) -> None:
    model = ScriptedModel()
    graph = agent_graph(model, load_tools(client, "demo"))
    model.script(calls("fail", fail={"message": "disk full"}), DONE)
    state = graph.invoke(GO, thread(thread_id))
    [failed] = tool_messages(state)
    assert (failed.status, failed.content) == ("error", "disk full")
    assert failed in model.seen[-1], "the model saw the error and could correct itself"
    assert state["messages"][-1].content == "done", "the run went on"
    client.end_thread(thread_id)


def test_agent_errors_raise_their_typed_class_or_become_messages(
    client: Client, thread_id: str
) -> None:
    slow = calls("sleep", sleep={"ms": 2000})
    model = ScriptedModel()
    graph = agent_graph(model, load_tools(client, "demo", timeout_ms=100))
    model.script(slow, DONE)
    with pytest.raises(Timeout):
        graph.invoke(GO, thread(thread_id))

    graph = agent_graph(model, load_tools(client, "demo", timeout_ms=100, on_agent_error="message"))
    model.script(slow, DONE)
    [timed_out] = tool_messages(graph.invoke(GO, thread(thread_id + "-m")))
    assert timed_out.status == "error"
    assert str(timed_out.content).startswith("mcpwatch timeout:")
    client.end_thread(thread_id)
    client.end_thread(thread_id + "-m")


def test_tool_options_and_shapes(client: Client, thread_id: str) -> None:
    every = load_tools(client, "demo")
    assert {"echo", "add", "counter", "sleep", "fail", "stats"} <= {t.name for t in every}
    add = next(t for t in every if t.name == "add")
    assert add.args_schema == next(
        t["inputSchema"] for t in client.list_tools("demo") if t["name"] == "add"
    )
    assert add.description == "Adds two numbers."
    assert add.metadata == {"mcpwatch_server": "demo", "mcp_tool": "add", "annotations": {}}

    prefixed = load_tools(client, "demo", include=["echo", "add"], prefix=True)
    assert sorted(t.name for t in prefixed) == ["demo__add", "demo__echo"]
    with pytest.raises(ValueError, match="no_such"):
        load_tools(client, "demo", include=["echo", "no_such"])

    [echo] = load_tools(client, "demo", include=["echo"], namespace="alice")
    assert echo.invoke({"message": "hi"}, thread(thread_id)) == "hi"  # outside a ToolNode
    assert f"alice:{thread_id}" in scopes_of(client)
    assert client.end_thread(thread_id, "alice") == 1


def test_awkward_thread_ids_become_hashed_scopes(client: Client) -> None:
    model = ScriptedModel()
    graph = agent_graph(model, load_tools(client, "demo", include=["counter"]))
    model.script(calls("counter"), DONE)
    awkward = "user 42/conv 7 ünïcode"
    assert [m.content for m in tool_messages(graph.invoke(GO, thread(awkward)))] == ["1"]
    assert scope_for(awkward).startswith("h:")
    assert scope_for(awkward) in scopes_of(client)
    assert client.end_thread(awkward) == 1


def test_without_a_thread_the_default_scope(client: Client) -> None:
    [echo] = load_tools(client, "demo", include=["echo"])
    assert echo.invoke({"message": "no thread"}) == "no thread"
