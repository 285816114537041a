"""A LangGraph agent loop for the tests: a scripted fake chat model and a ToolNode.

No LLM and no network: ``GenericFakeChatModel`` replays the ``AIMessage``s it is given,
tool calls included, and the tools call the real agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import RetryPolicy

#: A run's input, and the model's reply that ends it.
GO: dict[str, Any] = {"messages": [HumanMessage("go")]}
DONE = AIMessage(content="done")


def calls(*names: str, ids: Sequence[str] | None = None, **args: Any) -> AIMessage:
    """An AIMessage calling each tool in ``names``, with ``args[name]`` as its arguments
    (ids ``call-1``, ``call-2``, ... unless given)."""
    ids = ids or [f"call-{n}" for n in range(1, len(names) + 1)]
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args.get(name, {}), "id": id_, "type": "tool_call"}
            for name, id_ in zip(names, ids, strict=True)
        ],
    )


class ScriptedModel:
    """The graph's model: a ``GenericFakeChatModel`` per run, and what it was shown."""

    def __init__(self) -> None:
        self.seen: list[list[BaseMessage]] = []
        self._model = GenericFakeChatModel(messages=iter([]))

    def script(self, *replies: AIMessage) -> None:
        """The replies of the next run (a fake model is consumed once)."""
        self._model = GenericFakeChatModel(messages=iter(replies))

    def invoke(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        self.seen.append(list(state["messages"]))
        return {"messages": [self._model.invoke(state["messages"])]}

    async def ainvoke(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        self.seen.append(list(state["messages"]))
        return {"messages": [await self._model.ainvoke(state["messages"])]}


def agent_graph(
    model: ScriptedModel,
    tools: Sequence[BaseTool],
    *,
    retry: RetryPolicy | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """model -> tools -> model ... until the model answers without tool calls."""
    builder = StateGraph(MessagesState)
    builder.add_node("model", RunnableLambda(model.invoke, afunc=model.ainvoke))
    builder.add_node("tools", ToolNode(tools), retry_policy=retry)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    """The ToolMessages of a run's final state."""
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def thread(thread_id: str) -> RunnableConfig:
    """The run config of a thread."""
    return {"configurable": {"thread_id": thread_id}}
