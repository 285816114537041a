#!/usr/bin/env python3
"""A LangGraph agent calling MCP tools through a running mcpwatch agent, with mcpwatch-client.

Each LangGraph thread is an mcpwatch *scope*: its tool calls share one pooled MCP session
per server, so a stateful server keeps its state between the steps of a conversation,
and deleting the thread closes its sessions. A tool call's id is its Idempotency-Key, so
a retried step joins the first call instead of running the tool twice.

    pip install "./clients/python[langchain,langgraph]" langgraph
    cargo run --release -- serve                  # the agent, with its built-in demo server
    python3 examples/python/langgraph_tool.py     # MCPWATCH_AGENT / MCPWATCH_TOKEN if elsewhere

The chat model is scripted (no LLM, no network) so that the example runs anywhere; use
your own chat model (with ``.bind_tools(tools)``) in its place.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import RetryPolicy

from mcpwatch_client import AgentUnreachable, Client, Unavailable
from mcpwatch_client.checkpoint import ScopeClosingCheckpointer
from mcpwatch_client.langchain import load_tools


class ScriptedModel:
    """Stands in for a chat model: each run replays the replies it was given."""

    def __init__(self) -> None:
        self.model = GenericFakeChatModel(messages=iter([]))

    def will_call(self, *tools: str, **arguments: dict[str, Any]) -> None:
        """The next run calls each tool in turn (one call per model step), then answers."""
        steps = [
            AIMessage(
                content="",
                tool_calls=[
                    {"name": t, "args": arguments.get(t, {}), "id": f"call-{uuid.uuid4().hex[:8]}"}
                ],
            )
            for t in tools
        ]
        self.model = GenericFakeChatModel(messages=iter([*steps, AIMessage(content="done")]))

    def __call__(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [self.model.invoke(state["messages"])]}


def build_graph(
    model: ScriptedModel, client: Client, checkpointer: ScopeClosingCheckpointer[Any]
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """model -> tools -> model ... ; the tools node retries what never ran or got no answer."""
    tools = load_tools(client, "demo", include=["counter", "echo", "fail"], timeout_ms=10_000)
    retry = RetryPolicy(retry_on=(AgentUnreachable, Unavailable), max_attempts=3)
    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode(tools), retry_policy=retry)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)


def run(graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str) -> list[str]:
    """One turn of a thread; returns what the tools answered in it."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    messages = graph.invoke({"messages": [HumanMessage("go")]}, config)["messages"]
    turn = max(i for i, message in enumerate(messages) if message.type == "human")
    return [str(message.content) for message in messages[turn:] if message.type == "tool"]


def main() -> int:
    with Client() as client:  # MCPWATCH_AGENT, MCPWATCH_TOKEN
        model = ScriptedModel()
        saver = ScopeClosingCheckpointer(InMemorySaver(), client)
        graph = build_graph(model, client, saver)
        thread_a = f"example {uuid.uuid4().hex[:8]} / A"  # any id: it becomes a valid scope
        thread_b = f"example {uuid.uuid4().hex[:8]} / B"

        model.will_call("counter", "counter")
        seen_a = run(graph, thread_a)
        model.will_call("counter")
        seen_b = run(graph, thread_b)
        print("thread A counter:", seen_a, " thread B counter:", seen_b)
        assert seen_a == ["1", "2"], "a thread's calls share its session"
        assert seen_b == ["1"], "each thread has its own session"

        model.will_call("counter")
        later = run(graph, thread_a)
        print("thread A, next turn:", later)
        assert later == ["3"], "a later turn of the same thread continues its session"

        model.will_call("fail", fail={"message": "no such file"})
        failed = run(graph, thread_a)
        print("a tool's own failure reaches the model as an error message:", failed)
        assert failed == ["no such file"]

        saver.delete_thread(thread_a)
        saver.delete_thread(thread_b)
        model.will_call("counter")
        again = run(graph, thread_a)
        print("thread A after delete_thread starts over:", again)
        assert again == ["1"], "deleting the thread closed its sessions"
        saver.delete_thread(thread_a)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
