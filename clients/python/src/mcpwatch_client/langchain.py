"""LangChain / LangGraph tools for a server's MCP tools (extra ``[langchain]``).

::

    tools = load_tools(Client(), "demo")          # or: await aload_tools(AsyncClient(), "demo")
    graph = create_agent(model, tools)            # or ToolNode(tools) in a StateGraph
    graph.invoke(inputs, {"configurable": {"thread_id": "conv-42"}})

Each tool is a ``StructuredTool`` whose schema is the MCP tool's ``inputSchema``:

* the scope is ``scope_for(thread_id, namespace)`` of the run's
  ``config["configurable"]["thread_id"]`` (no thread: the scope ``default``), so each
  conversation has its own sessions;
* the ``Idempotency-Key`` is ``step_key(scope, tool_call_id, server, tool, task=...)``
  when the tool runs in a ``ToolNode`` (it injects ``runtime``; ``task`` is the node
  task's checkpoint namespace), so a ``RetryPolicy`` re-run or a resume from a
  checkpoint joins the first call instead of running the tool again; elsewhere it is
  random per invocation, which makes transport retries safe;
* ``isError`` becomes a ``ToolException``, handled into an error ``ToolMessage`` the
  model can read and correct itself from;
* agent errors raise their typed class (``Timeout``, ``BreakerOpen``, ``AgentUnreachable``
  ...) so that a node ``RetryPolicy(retry_on=...)`` can act on them, or, with
  ``on_agent_error="message"``, reach the model as error messages too.

The content is the tool's text (or LangChain content blocks when it returned images);
the artifact is its ``structuredContent``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolArg, StructuredTool, ToolException

from ._async_client import AsyncClient
from ._client import Client
from ._errors import McpwatchError
from ._result import CallResult
from ._scope import scope_for, step_key

__all__ = ["aload_tools", "load_tools"]

AgentErrorPolicy = Literal["raise", "message"]
ToolOutput = tuple[str | list[str | dict[str, Any]], Any]


@dataclass(frozen=True)
class _McpTool:
    """One MCP tool of one server, as the LangChain tool calls it."""

    server: str
    name: str
    namespace: str | None
    timeout_ms: int | None
    on_agent_error: AgentErrorPolicy

    def target(self, config: RunnableConfig, runtime: object | None) -> tuple[str | None, str]:
        """The scope (from the run's thread) and the Idempotency-Key (from the tool call
        and the LangGraph task running it)."""
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        scope = None if thread_id is None else scope_for(str(thread_id), self.namespace)
        tool_call_id = getattr(runtime, "tool_call_id", None)
        if tool_call_id is None:
            return scope, f"call-{uuid.uuid4().hex}"
        task = configurable.get("checkpoint_ns")
        return scope, step_key(
            scope, str(tool_call_id), self.server, self.name, task=str(task) if task else None
        )

    def output(self, result: CallResult) -> ToolOutput:
        """``(content, artifact)`` of a result; ``ToolException`` for ``isError``."""
        if result.is_error:
            raise ToolException(result.text or f"{self.name} reported an error")
        return _content(result), result.structured

    def as_message(self, error: McpwatchError) -> ToolException | None:
        """The agent error as a message for the model, under ``on_agent_error="message"``
        (``None``: raise it as it is)."""
        if self.on_agent_error == "message":
            return ToolException(f"mcpwatch {error.kind}: {error.message}")
        return None


def load_tools(
    client: Client,
    server: str,
    *,
    include: Collection[str] | None = None,
    prefix: bool = False,
    namespace: str | None = None,
    timeout_ms: int | None = None,
    on_agent_error: AgentErrorPolicy = "raise",
) -> list[StructuredTool]:
    """Synchronous tools for ``server``'s MCP tools, calling through ``client``.

    ``include`` keeps only the named MCP tools; ``prefix`` names them ``server__tool``;
    ``namespace`` goes into every scope (``scope_for(thread_id, namespace)``), for
    example a user id; ``timeout_ms`` is every call's deadline.
    """
    tools = []
    for spec in _selected(client.list_tools(server), include):
        mcp = _McpTool(server, spec["name"], namespace, timeout_ms, on_agent_error)
        tools.append(_structured_tool(spec, mcp, prefix, func=_sync_function(client, mcp)))
    return tools


async def aload_tools(
    client: AsyncClient,
    server: str,
    *,
    include: Collection[str] | None = None,
    prefix: bool = False,
    namespace: str | None = None,
    timeout_ms: int | None = None,
    on_agent_error: AgentErrorPolicy = "raise",
) -> list[StructuredTool]:
    """Asynchronous tools for ``server``'s MCP tools; options as for ``load_tools``."""
    tools = []
    for spec in _selected(await client.list_tools(server), include):
        mcp = _McpTool(server, spec["name"], namespace, timeout_ms, on_agent_error)
        tools.append(_structured_tool(spec, mcp, prefix, coroutine=_async_function(client, mcp)))
    return tools


# The tool functions. LangChain passes the run's config to the parameter annotated
# `RunnableConfig` (by type, so the name avoids clashing with a tool argument), and
# LangGraph's ToolNode injects its ToolRuntime into the parameter named `runtime`.


def _sync_function(client: Client, mcp: _McpTool) -> Callable[..., ToolOutput]:
    def run(
        mcpwatch_run_config: RunnableConfig,
        runtime: Annotated[object | None, InjectedToolArg()] = None,
        **arguments: Any,
    ) -> ToolOutput:
        scope, key = mcp.target(mcpwatch_run_config, runtime)
        try:
            result = client.call_tool(
                mcp.server,
                mcp.name,
                arguments,
                scope=scope,
                timeout_ms=mcp.timeout_ms,
                idempotency_key=key,
            )
        except McpwatchError as error:
            if (message := mcp.as_message(error)) is not None:
                raise message from error
            raise
        return mcp.output(result)

    return run


def _async_function(client: AsyncClient, mcp: _McpTool) -> Callable[..., Awaitable[ToolOutput]]:
    async def arun(
        mcpwatch_run_config: RunnableConfig,
        runtime: Annotated[object | None, InjectedToolArg()] = None,
        **arguments: Any,
    ) -> ToolOutput:
        scope, key = mcp.target(mcpwatch_run_config, runtime)
        try:
            result = await client.call_tool(
                mcp.server,
                mcp.name,
                arguments,
                scope=scope,
                timeout_ms=mcp.timeout_ms,
                idempotency_key=key,
            )
        except McpwatchError as error:
            if (message := mcp.as_message(error)) is not None:
                raise message from error
            raise
        return mcp.output(result)

    return arun


def _selected(specs: list[dict[str, Any]], include: Collection[str] | None) -> list[dict[str, Any]]:
    if include is None:
        return specs
    missing = set(include) - {spec["name"] for spec in specs}
    if missing:
        raise ValueError(f"no such tools: {', '.join(sorted(missing))}")
    return [spec for spec in specs if spec["name"] in include]


def _structured_tool(
    spec: dict[str, Any], mcp: _McpTool, prefix: bool, **function: Any
) -> StructuredTool:
    schema = spec.get("inputSchema") or {"type": "object", "properties": {}}
    return StructuredTool(
        name=f"{mcp.server}__{mcp.name}" if prefix else mcp.name,
        description=spec.get("description") or spec.get("title") or mcp.name,
        args_schema=schema,
        response_format="content_and_artifact",
        handle_tool_error=True,
        metadata={
            "mcpwatch_server": mcp.server,
            "mcp_tool": mcp.name,
            "annotations": spec.get("annotations") or {},
        },
        **function,
    )


def _content(result: CallResult) -> str | list[str | dict[str, Any]]:
    """The text when every block is text; else LangChain content blocks."""
    blocks = result.content
    if all(block.get("type") == "text" for block in blocks):
        return result.text
    converted: list[str | dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            converted.append({"type": "text", "text": block.get("text", "")})
        elif kind in ("image", "audio"):
            converted.append(
                {"type": kind, "base64": block.get("data", ""), "mime_type": block.get("mimeType")}
            )
        else:  # resources and links: their JSON, for the model to read
            converted.append({"type": "text", "text": json.dumps(block)})
    return converted
