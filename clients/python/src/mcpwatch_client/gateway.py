"""Helpers for MCP clients pointed at the agent's gateway endpoint (``/mcp/{server}``).

The gateway arrives with the gateway issue; until then these helpers set the header that
the agent's ``/v1`` API already honours, and that the gateway will read:
``X-Mcpwatch-Scope``, the LangGraph thread's scope (``scope_for(thread_id, namespace)``).
The downstream MCP session may be per call (langchain-mcp-adapters opens one per tool
call); the agent keeps the upstream session per scope, so a stateful server keeps its
state across a thread's calls.

* ``scope_header`` / ``scope_header_interceptor(namespace)``: a langchain-mcp-adapters
  tool interceptor (``MultiServerMCPClient(..., tool_interceptors=[scope_header])``). No
  extra needed; the adapters are not a dependency.
* ``deerflow_scope``: the builder deer-flow's ``extensions_config.json`` names in
  ``"mcpInterceptors": ["mcpwatch_client.gateway:deerflow_scope"]``.
* ``ScopeAuth``: an ``httpx2.Auth`` for ``mcp`` 2.x clients (extra ``[mcp2]``, imported
  on first use), which carry the caller's context into the transport, so one connection
  can serve many threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._scope import scope_for
from ._thread import current_thread_id, thread_id_of
from ._wire import SCOPE_HEADER

if TYPE_CHECKING:
    from ._scope_auth import ScopeAuth

__all__ = [
    "SCOPE_HEADER",
    "ScopeAuth",
    "ToolCallRequest",
    "deerflow_scope",
    "scope_header",
    "scope_header_interceptor",
]

Request = TypeVar("Request", bound="ToolCallRequest")
Result = TypeVar("Result")


class ToolCallRequest(Protocol):
    """What the interceptor uses of langchain-mcp-adapters' ``MCPToolCallRequest``."""

    headers: dict[str, Any] | None
    runtime: object | None

    def override(self: Request, **overrides: Any) -> Request:
        """A copy with ``headers`` (or ``name``, ``args``) replaced."""
        ...


Interceptor = Callable[
    [Request, Callable[[Request], Awaitable[Result]]], Coroutine[Any, Any, Result]
]


def scope_header_interceptor(namespace: str | None = None) -> Interceptor[Any, Any]:
    """A langchain-mcp-adapters interceptor that sends the thread's scope in
    ``X-Mcpwatch-Scope``.

    The thread comes from the ToolNode's ``runtime`` (``context["thread_id"]``, then
    ``config["configurable"]["thread_id"]``), else from the current LangChain run.
    Outside any thread the request is passed on unchanged. The adapters honour
    interceptor headers only for tools from ``client.get_tools()`` (a session per call),
    not with a held ``client.session(...)``.
    """

    async def scope_header(
        request: Request, handler: Callable[[Request], Awaitable[Result]]
    ) -> Result:
        thread_id = thread_id_of(request.runtime) or current_thread_id()
        if thread_id is not None:
            headers = {**(request.headers or {}), SCOPE_HEADER: scope_for(thread_id, namespace)}
            request = request.override(headers=headers)
        return await handler(request)

    return scope_header


#: The interceptor without a namespace.
scope_header = scope_header_interceptor()


def deerflow_scope() -> Interceptor[Any, Any]:
    """deer-flow's interceptor builder (called with no arguments): ``scope_header``."""
    return scope_header


def __getattr__(name: str) -> Any:
    """``ScopeAuth`` is imported on first use: it needs httpx2 (extra ``[mcp2]``)."""
    if name == "ScopeAuth":
        from ._scope_auth import ScopeAuth  # noqa: PLC0415 (needs httpx2)

        return ScopeAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
