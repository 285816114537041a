"""The ``/v1`` API as data: each operation is a ``Request`` (what to send, how to read the answer).

``Client`` and ``AsyncClient`` only send these and retry them; everything about the
API's shapes lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._errors import ToolError, error_from_answer
from ._result import CallResult
from ._trace import inject_trace_context

__all__ = ["DEADLINE_MARGIN_S", "SCOPE_HEADER", "Request"]

T = TypeVar("T")

#: The header that carries the scope, so that a load balancer can route by it.
SCOPE_HEADER = "X-Mcpwatch-Scope"
#: The header that makes a retried call join the first one.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How much longer than ``timeout_ms`` the HTTP request waits for the agent's answer
#: (queueing for a slot and opening a session come on top of the tool's deadline).
DEADLINE_MARGIN_S = 30.0


@dataclass(frozen=True)
class Request(Generic[T]):
    """One API request: method, path, JSON body and headers, and how to read a 2xx answer.

    ``retry_safe`` says whether a request that may have reached the agent can be sent
    again (reads, deletes, and calls with an ``Idempotency-Key``). ``timeout`` is the
    read timeout in seconds, ``None`` for the client's default.
    """

    method: str
    path: str
    read: Callable[[Any], T]
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_safe: bool = True
    timeout: float | None = None

    def answer(self, response: httpx.Response) -> T:
        """The value of a 2xx answer; the typed error of any other."""
        if response.is_success:
            return self.read(response.json())
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        raise error_from_answer(response.status_code, body, response.headers.get("retry-after"))


def _scope_headers(scope: str | None) -> dict[str, str]:
    """``X-Mcpwatch-Scope`` (and the trace context). A scope that cannot be a header value
    (not visible ASCII) is left to the body, where the agent refuses it with its own 400."""
    headers = {SCOPE_HEADER: scope} if scope is not None and _header_safe(scope) else {}
    inject_trace_context(headers)
    return headers


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def call_tool(
    server: str,
    tool: str,
    arguments: dict[str, Any] | None,
    *,
    scope: str | None,
    timeout_ms: int | None,
    idempotency_key: str | None,
    raise_on_tool_error: bool,
) -> Request[CallResult]:
    """``POST /v1/tools/call``. The scope goes in the body and in ``X-Mcpwatch-Scope``."""
    body: dict[str, Any] = {"server": server, "tool": tool, "arguments": arguments or {}}
    if scope is not None:
        body["scope"] = scope
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    headers = _scope_headers(scope)
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key

    def read(answer: Any) -> CallResult:
        result = CallResult.from_answer(answer)
        if raise_on_tool_error and result.is_error:
            raise ToolError(result)
        return result

    return Request(
        "POST",
        "/v1/tools/call",
        read,
        body=body,
        headers=headers,
        retry_safe=idempotency_key is not None,
        timeout=None if timeout_ms is None else timeout_ms / 1000 + DEADLINE_MARGIN_S,
    )


def list_tools(server: str, scope: str | None) -> Request[list[dict[str, Any]]]:
    """``GET /v1/servers/{server}/tools``."""
    return Request(
        "GET",
        f"/v1/servers/{_segment(server)}/tools",
        _field("tools"),
        headers=_scope_headers(scope),
    )


def list_resources(server: str, scope: str | None) -> Request[dict[str, Any]]:
    """``GET /v1/servers/{server}/resources``: ``resources`` and ``resource_templates``."""
    return Request(
        "GET", f"/v1/servers/{_segment(server)}/resources", _whole, headers=_scope_headers(scope)
    )


def read_resource(server: str, uri: str, scope: str | None) -> Request[dict[str, Any]]:
    """``POST /v1/resources/read``: the MCP ``ReadResourceResult``."""
    body: dict[str, Any] = {"server": server, "uri": uri}
    if scope is not None:
        body["scope"] = scope
    return Request(
        "POST", "/v1/resources/read", _field("result"), body=body, headers=_scope_headers(scope)
    )


def list_prompts(server: str, scope: str | None) -> Request[list[dict[str, Any]]]:
    """``GET /v1/servers/{server}/prompts``."""
    return Request(
        "GET",
        f"/v1/servers/{_segment(server)}/prompts",
        _field("prompts"),
        headers=_scope_headers(scope),
    )


def get_prompt(
    server: str, name: str, arguments: dict[str, str] | None, scope: str | None
) -> Request[dict[str, Any]]:
    """``POST /v1/prompts/get``: the MCP ``GetPromptResult``."""
    body: dict[str, Any] = {"server": server, "name": name}
    if arguments is not None:
        body["arguments"] = arguments
    if scope is not None:
        body["scope"] = scope
    return Request(
        "POST", "/v1/prompts/get", _field("result"), body=body, headers=_scope_headers(scope)
    )


def servers() -> Request[list[dict[str, Any]]]:
    """``GET /v1/servers``: each server's transport, breaker state and session counts."""
    return Request("GET", "/v1/servers", _field("servers"))


def sessions() -> Request[list[dict[str, Any]]]:
    """``GET /v1/sessions``: the live sessions."""
    return Request("GET", "/v1/sessions", _field("sessions"))


def close_scope(scope: str) -> Request[int]:
    """``DELETE /v1/scopes/{scope}``: how many sessions closed."""
    return Request("DELETE", f"/v1/scopes/{_segment(scope)}", _closed)


def close_session(server: str, scope: str) -> Request[int]:
    """``DELETE /v1/sessions/{server}/{scope}``: how many sessions closed (0 or 1)."""
    return Request("DELETE", f"/v1/sessions/{_segment(server)}/{_segment(scope)}", _closed)


def _segment(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded."""
    return quote(value, safe="")


def _field(name: str) -> Callable[[Any], Any]:
    return lambda answer: answer[name]


def _whole(answer: Any) -> Any:
    return answer


def _closed(answer: Any) -> int:
    return int(answer["closed"])
