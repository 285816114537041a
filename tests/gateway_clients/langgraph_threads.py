#!/usr/bin/env python3
"""Two LangGraph threads interleave calls to a stateful MCP tool through langchain-mcp-adapters.

Run with .test-deps/venv-mcp1/bin/python (langchain-mcp-adapters 0.3.2, langgraph 1.2.24,
langchain-core 1.8.3, mcp 1.30.0). `MultiServerMCPClient` reaches `--url` over
streamable HTTP on its default path: every tool call is a new MCP session (initialize,
call, DELETE). A graph (model -> ToolNode -> model) with a scripted fake chat model from
langchain_core (no LLM, no network) runs one turn per thread in the order t1, t2, t1, t2,
...; each turn calls the `counter` tool once.

  --interceptor  adds examples/langgraph_scope.py's interceptor, which sends the
                 thread id as X-Mcpwatch-Scope on each call.
  --scope S      a static X-Mcpwatch-Scope on the connection (the interceptor overrides it).
  --rounds N     turns per thread (default 3).

Scenario `threads` (the only one): the last stdout line is one JSON object
  {"t1": [counter values], "t2": [...], "client": "langgraph", "scenario": "threads",
   "interceptor": bool, "rounds": n, "tools": [names from get_tools()],
   "scopes_sent": {"t1": [X-Mcpwatch-Scope set by the interceptors, per call; null when none],
                   "t2": [...]}}
(a static --scope lives on the connection, so it shows in scopes_sent as null; get_tools()
lists the tools in a session of its own, outside any thread, with only the static header.)
Directly against the demo server every value is 1 (a fresh session per call); through
mcpwatch with the interceptor each thread counts 1, 2, 3; through mcpwatch without it both
threads share the `default` scope and its one session (t1: 1, 3, 5; t2: 2, 4, 6).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "examples"))

import common  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langchain_mcp_adapters.client import MultiServerMCPClient  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402
from langgraph_scope import mcpwatch_scope  # noqa: E402

CLIENT_NAME = "langgraph"
THREADS = ("t1", "t2")
SERVER = "demo"


def add_options(parser: Any) -> None:
    parser.add_argument(
        "--interceptor", action="store_true", help="add the thread-id scope interceptor"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns per thread (default 3)")


def script() -> Iterator[AIMessage]:
    """The fake model's replies: each turn calls `counter` once, then answers."""
    for n in itertools.count(1):
        yield AIMessage(content="", tool_calls=[{"name": common.tool("counter"), "args": {}, "id": f"call-{n}"}])
        yield AIMessage(content=f"turn {n} done")


class ScopeRecorder:
    """Innermost interceptor: notes the scope header each call is about to be sent with."""

    def __init__(self) -> None:
        self.sent: dict[str, list[str | None]] = {thread: [] for thread in THREADS}

    async def __call__(self, request: Any, handler: Any) -> Any:
        config = getattr(request.runtime, "config", None) or {}
        thread = config.get("configurable", {}).get("thread_id")
        if thread not in self.sent:
            raise common.ScenarioFailed(
                f"tool call outside the threads (runtime {request.runtime!r})"
            )
        self.sent[thread].append((request.headers or {}).get(common.SCOPE_HEADER))
        return await handler(request)


def build_graph(tools: list[Any]) -> Any:
    model = GenericFakeChatModel(messages=script())

    async def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


def counter_in(message: BaseMessage) -> int:
    """The counter value in a ToolMessage (plain text, or text content blocks)."""
    content = message.content
    if isinstance(content, list):
        content = "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    if getattr(message, "status", "success") == "error":
        raise common.ScenarioFailed(f"counter failed: {content!r}")
    try:
        return int(content)
    except ValueError as error:
        raise common.ScenarioFailed(f"counter answered {content!r}, not a number") from error


async def turn(graph: Any, thread: str) -> int:
    """One turn of a thread; returns the counter value its one tool call saw."""
    state = await graph.ainvoke(
        {"messages": [HumanMessage("count")]}, {"configurable": {"thread_id": thread}}
    )
    messages = state["messages"]
    last_human = max(i for i, message in enumerate(messages) if message.type == "human")
    answers = [message for message in messages[last_human:] if message.type == "tool"]
    if len(answers) != 1:
        raise common.ScenarioFailed(
            f"thread {thread}: {len(answers)} tool answers in one turn, expected 1"
        )
    return counter_in(answers[0])


async def run(args: Any) -> dict[str, Any]:
    recorder = ScopeRecorder()
    connection: dict[str, Any] = {
        "transport": "streamable_http",
        "url": args.url,
        "timeout": args.timeout,
        "sse_read_timeout": args.timeout,
    }
    if args.scope:
        connection["headers"] = common.scope_headers(args.scope)
    interceptors = [mcpwatch_scope, recorder] if args.interceptor else [recorder]
    client = MultiServerMCPClient({SERVER: connection}, tool_interceptors=interceptors)
    tools = await client.get_tools()
    counter = [tool for tool in tools if tool.name == common.tool("counter")]
    if not counter:
        raise common.ScenarioFailed(f"no counter tool among {[tool.name for tool in tools]}")
    graph = build_graph(counter)
    result: dict[str, Any] = {
        "client": CLIENT_NAME,
        "scenario": args.scenario,
        "interceptor": args.interceptor,
        "rounds": args.rounds,
        "tools": sorted(tool.name for tool in tools),
    }
    seen: dict[str, list[int]] = {thread: [] for thread in THREADS}
    for _ in range(args.rounds):
        for thread in THREADS:
            seen[thread].append(await turn(graph, thread))
    result.update(seen)
    result["scopes_sent"] = recorder.sent
    return result


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], ["threads"], extra=add_options)

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(run(args), args.timeout)

    try:
        result = asyncio.run(bounded())
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
