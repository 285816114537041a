"""ScopeClosingCheckpointer: deleting a thread's checkpoints also ends its sessions."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from typing import Any

import pytest
from conftest import scopes_of
from graphs import DONE, GO, ScriptedModel, agent_graph, calls, thread, tool_messages
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from mcpwatch_client import Client, scope_for
from mcpwatch_client.checkpoint import ScopeClosingCheckpointer
from mcpwatch_client.langchain import load_tools
from mcpwatch_client.testing import AgentProcess


def run_counter(client: Client, saver: BaseCheckpointSaver[Any], thread_id: str) -> str:
    model = ScriptedModel()
    graph = agent_graph(model, load_tools(client, "demo", include=["counter"]), checkpointer=saver)
    model.script(calls("counter"), DONE)
    return str(tool_messages(graph.invoke(GO, thread(thread_id)))[-1].content)


def test_delete_thread_closes_the_scope(client: Client, thread_id: str) -> None:
    saver = ScopeClosingCheckpointer(InMemorySaver(), client)
    assert run_counter(client, saver, thread_id) == "1"
    assert run_counter(client, saver, thread_id) == "2", "the same thread, the same session"
    assert saver.get_tuple(thread(thread_id)) is not None
    assert scope_for(thread_id) in scopes_of(client)

    saver.delete_thread(thread_id)
    assert saver.get_tuple(thread(thread_id)) is None, "the checkpoints are gone"
    assert scope_for(thread_id) not in scopes_of(client), "and so are the sessions"
    assert run_counter(client, saver, thread_id) == "1"
    saver.delete_thread(thread_id)


def test_adelete_thread_with_either_client(mcpwatch_agent: AgentProcess, client: Client) -> None:
    async def main() -> None:
        async with mcpwatch_agent.async_client() as aclient:
            for closer, thread_id in ((aclient, "adelete-async"), (client, "adelete-sync")):
                scope = scope_for(thread_id, "u1")
                client.call_tool("demo", "counter", scope=scope)
                assert scope in scopes_of(client)
                saver = ScopeClosingCheckpointer(InMemorySaver(), closer, namespace="u1")
                await saver.adelete_thread(thread_id)
                assert scope not in scopes_of(client)

    asyncio.run(main())


def test_delete_thread_needs_a_sync_client(mcpwatch_agent: AgentProcess) -> None:
    aclient = mcpwatch_agent.async_client()
    saver = ScopeClosingCheckpointer(InMemorySaver(), aclient)
    with pytest.raises(TypeError, match="adelete_thread"):
        saver.delete_thread("t")
    asyncio.run(aclient.aclose())


def test_an_unreachable_agent_still_deletes_the_checkpoints(
    client: Client, thread_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saver = ScopeClosingCheckpointer(InMemorySaver(), client)
    run_counter(client, saver, thread_id)
    with (
        Client(f"http://127.0.0.1:{port}", retries=0) as nowhere,
        caplog.at_level(logging.WARNING, logger="mcpwatch_client.checkpoint"),
    ):
        saver.client = nowhere
        saver.delete_thread(thread_id)
    assert saver.get_tuple(thread(thread_id)) is None
    assert "not closed" in caplog.text
    assert client.end_thread(thread_id) == 1, "the session was left to the idle TTL"


def test_every_saver_method_is_forwarded() -> None:
    public = {
        name
        for name, member in inspect.getmembers(BaseCheckpointSaver)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }
    assert public <= set(vars(ScopeClosingCheckpointer)), (
        "new BaseCheckpointSaver methods to forward: "
        f"{sorted(public - set(vars(ScopeClosingCheckpointer)))}"
    )


def test_the_allowlist_reaches_the_wrapped_saver(client: Client) -> None:
    lax = ScopeClosingCheckpointer(InMemorySaver(), client)
    assert lax.with_allowlist([("my_module", "MyType")]) is lax, "nothing to change"
    strict = JsonPlusSerializer(allowed_msgpack_modules=[("other_module", "OtherType")])
    saver = ScopeClosingCheckpointer(InMemorySaver(serde=strict), client, namespace="n")
    allowed = saver.with_allowlist([("my_module", "MyType")])
    assert isinstance(allowed, ScopeClosingCheckpointer)
    assert allowed.saver is not saver.saver
    assert allowed.serde is allowed.saver.serde
    assert (allowed.client, allowed.namespace) == (client, "n")
    assert isinstance(allowed.saver, BaseCheckpointSaver)
