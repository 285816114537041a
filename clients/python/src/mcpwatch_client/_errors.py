"""Typed errors: one class per agent ``ErrorKind``, grouped so ``except`` clauses read naturally.

::

    McpwatchError                 kind, status, message, retry_after, not_processed
    ├── ClientError               the request is wrong: fix it, do not retry
    │   InvalidRequest 400, Unauthorized 401, UnknownServer 404, PayloadTooLarge 413
    ├── Unavailable               refused before anything ran: retry later
    │   RateLimited 429, BreakerOpen 503, PoolExhausted 503, ShuttingDown 503
    ├── UpstreamError 502         the MCP server or the way to it failed
    │   TransportClosed, SessionExpired, ConnectFailed, InitializeFailed,
    │   HttpStatus, ResponseTooLarge, ProtocolError
    ├── Timeout 504, Cancelled 499
    ├── AgentUnreachable          no answer from the agent: the call may still be running
    └── ToolError                 the tool answered ``isError: true`` (raised only when asked)

``not_processed`` is true when the tool certainly did not run, so a retry cannot run it
twice. It comes from the error body's ``may_have_run`` when the agent sends it, else from
the same rule the agent applies (``ErrorKind::tool_may_have_run``).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from time import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._result import CallResult

__all__ = [
    "AgentUnreachable",
    "BreakerOpen",
    "Cancelled",
    "ClientError",
    "ConnectFailed",
    "HttpStatus",
    "InitializeFailed",
    "InvalidRequest",
    "McpwatchError",
    "PayloadTooLarge",
    "PoolExhausted",
    "ProtocolError",
    "RateLimited",
    "ResponseTooLarge",
    "SessionExpired",
    "ShuttingDown",
    "Timeout",
    "ToolError",
    "TransportClosed",
    "Unauthorized",
    "Unavailable",
    "UnknownServer",
    "UpstreamError",
    "error_from_answer",
]

#: Kinds whose call never reached a server that could run it (the agent's
#: ``ErrorKind::tool_may_have_run`` is false for exactly these).
NEVER_RAN_KINDS = frozenset(
    {
        "breaker_open",
        "pool_exhausted",
        "shutting_down",
        "unknown_server",
        "invalid_request",
        "unauthorized",
        "payload_too_large",
        "connect_failed",
        "initialize_failed",
        "rate_limited",
        "session_expired",
    }
)


class McpwatchError(Exception):
    """An error answered by the agent, or no answer at all.

    ``kind`` is the agent's ``ErrorKind`` string (``"timeout"``, ``"breaker_open"``, ...;
    an unknown kind is kept as sent), ``status`` the HTTP status (``None`` when the agent
    did not answer), ``retry_after`` the ``Retry-After`` in seconds (``None`` when absent),
    and ``not_processed`` true when the tool certainly did not run.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None,
        retry_after: float | None = None,
        not_processed: bool | None = None,
    ) -> None:
        super().__init__(f"{kind} ({status}): {message}" if status else f"{kind}: {message}")
        self.kind = kind
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.not_processed = kind in NEVER_RAN_KINDS if not_processed is None else not_processed


class ClientError(McpwatchError):
    """The request is wrong (4xx): fix it rather than retry it."""


class InvalidRequest(ClientError):
    """400 ``invalid_request``: a malformed body, a bad scope, bad tool arguments, or an
    ``Idempotency-Key`` reused with a different request."""


class Unauthorized(ClientError):
    """401 ``unauthorized``: the agent wants ``Authorization: Bearer <agent.token>``."""


class UnknownServer(ClientError):
    """404 ``unknown_server``: no server of that name is configured."""


class PayloadTooLarge(ClientError):
    """413 ``payload_too_large``: the body is over ``agent.max_body_bytes``."""


class Unavailable(McpwatchError):
    """Refused before anything ran (``not_processed``): worth retrying after ``retry_after``."""


class RateLimited(Unavailable):
    """429 ``rate_limited``: the MCP server asked for less traffic."""


class BreakerOpen(Unavailable):
    """503 ``breaker_open``: the server failed repeatedly; calls fail fast for a cool-down."""


class PoolExhausted(Unavailable):
    """503 ``pool_exhausted``: every slot or session was busy for the whole queue timeout."""


class ShuttingDown(Unavailable):
    """503 ``shutting_down``: the agent is draining."""


class UpstreamError(McpwatchError):
    """502: the MCP server, or the way to it, failed."""


class TransportClosed(UpstreamError):
    """``transport_closed``: the connection to the server dropped mid-call (it may have run)."""


class SessionExpired(UpstreamError):
    """``session_expired``: the server forgot the session before processing the call."""


class ConnectFailed(UpstreamError):
    """``connect_failed``: the server could not be started or reached."""


class InitializeFailed(UpstreamError):
    """``initialize_failed``: the server refused or failed the MCP handshake."""


class HttpStatus(UpstreamError):
    """``http_status``: the server answered an HTTP error."""


class ResponseTooLarge(UpstreamError):
    """``response_too_large``: the server's answer was over ``max_response_bytes``."""


class ProtocolError(UpstreamError):
    """``protocol_error``: the server answered something that is not valid MCP."""


class Timeout(McpwatchError):
    """504 ``timeout``: the deadline passed; the tool may have run (or may still finish)."""


class Cancelled(McpwatchError):
    """499 ``cancelled``: the call was cancelled."""


class AgentUnreachable(McpwatchError):
    """No answer from the agent (connect refused, connection dropped, read timeout).

    ``not_processed`` is true only when the request never left (the connection could
    not be made); otherwise the call may still be running. Retrying with the same
    ``Idempotency-Key`` joins it.
    """


class ToolError(McpwatchError):
    """The tool ran and reported failure (``isError: true``, HTTP 200).

    Raised only with ``raise_on_tool_error=True``; ``result`` is the whole answer.
    """

    def __init__(self, result: CallResult) -> None:
        super().__init__(result.text or "the tool reported an error", kind="tool_error", status=200)
        self.not_processed = False
        self.result = result


_CLASS_OF_KIND: dict[str, type[McpwatchError]] = {
    "invalid_request": InvalidRequest,
    "unauthorized": Unauthorized,
    "unknown_server": UnknownServer,
    "payload_too_large": PayloadTooLarge,
    "rate_limited": RateLimited,
    "breaker_open": BreakerOpen,
    "pool_exhausted": PoolExhausted,
    "shutting_down": ShuttingDown,
    "transport_closed": TransportClosed,
    "session_expired": SessionExpired,
    "connect_failed": ConnectFailed,
    "initialize_failed": InitializeFailed,
    "http_status": HttpStatus,
    "response_too_large": ResponseTooLarge,
    "protocol_error": ProtocolError,
    "timeout": Timeout,
    "cancelled": Cancelled,
}


def error_from_answer(status: int, body: Any, retry_after: str | None) -> McpwatchError:
    """The typed error for an agent answer with a non-2xx ``status``.

    ``body`` is the decoded JSON (``{"error": {"type", "message", "may_have_run"?}}``), or
    anything else when the answer was not the agent's (a proxy's HTML page): that gives
    the base class with kind ``"unknown"``.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return McpwatchError(
            f"HTTP {status} without an mcpwatch error body",
            kind="unknown",
            status=status,
            retry_after=parse_retry_after(retry_after),
            not_processed=False,
        )
    kind = str(error.get("type", "unknown"))
    may_have_run = error.get("may_have_run")
    cls = _CLASS_OF_KIND.get(kind, McpwatchError)
    return cls(
        str(error.get("message", "")),
        kind=kind,
        status=status,
        retry_after=parse_retry_after(retry_after),
        not_processed=(not may_have_run) if isinstance(may_have_run, bool) else None,
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: either delta-seconds or an HTTP date; ``None`` when absent
    or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
