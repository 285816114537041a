"""``Client``: the synchronous client of the agent's ``/v1`` API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _wire
from ._result import CallResult
from ._retry import backoff_s, should_retry, unreachable
from ._scope import scope_for
from ._settings import base_url_of, default_headers

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "Client"]

T = TypeVar("T")

#: HTTP read timeout of requests without ``timeout_ms``, in seconds.
DEFAULT_TIMEOUT_S = 120.0
#: Transport retries after the first attempt (see ``_retry``).
DEFAULT_RETRIES = 2


class Client:
    """A synchronous client of a running mcpwatch agent; a context manager.

    ``base_url`` defaults to ``MCPWATCH_AGENT`` (else ``http://127.0.0.1:8700``) and
    ``token`` to ``MCPWATCH_TOKEN``. ``timeout`` is the HTTP read timeout in seconds of
    requests without ``timeout_ms`` (calls with one wait ``timeout_ms`` plus 30 s).
    ``retries`` bounds the transport retries of one request. ``transport`` replaces
    httpx's (a proxy, a test's fault injector). One client is safe to share between threads.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url_of(base_url)
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=default_headers(token),
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def call_tool(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        scope: str | None = None,
        timeout_ms: int | None = None,
        idempotency_key: str | None = None,
        raise_on_tool_error: bool = False,
    ) -> CallResult:
        """Calls ``tool`` on ``server`` in ``scope`` (``None``: the scope ``default``).

        ``scope`` must be a valid scope: for a thread id use ``scope_for(thread_id)``.
        ``timeout_ms`` is the call's deadline at the agent (default: the server's
        ``call_timeout``); keep it the same across retries of one step. With an
        ``idempotency_key`` a retried request joins the first call or gets its answer
        (for ``agent.idempotency_ttl``, on the same agent process), so the tool runs
        once. A tool's ``isError`` result is returned (``result.is_error``), or raised
        as ``ToolError`` with ``raise_on_tool_error``.
        """
        return self._send(
            _wire.call_tool(
                server,
                tool,
                arguments,
                scope=scope,
                timeout_ms=timeout_ms,
                idempotency_key=idempotency_key,
                raise_on_tool_error=raise_on_tool_error,
            )
        )

    def list_tools(self, server: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        """The server's tools (MCP ``Tool`` objects with ``name``, ``inputSchema``, ...)."""
        return self._send(_wire.list_tools(server, scope))

    def list_resources(self, server: str, *, scope: str | None = None) -> dict[str, Any]:
        """The server's ``resources`` and ``resource_templates``."""
        return self._send(_wire.list_resources(server, scope))

    def read_resource(self, server: str, uri: str, *, scope: str | None = None) -> dict[str, Any]:
        """The MCP ``ReadResourceResult`` of ``uri``."""
        return self._send(_wire.read_resource(server, uri, scope))

    def list_prompts(self, server: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        """The server's prompts."""
        return self._send(_wire.list_prompts(server, scope))

    def get_prompt(
        self,
        server: str,
        name: str,
        arguments: dict[str, str] | None = None,
        *,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """The MCP ``GetPromptResult`` of prompt ``name``."""
        return self._send(_wire.get_prompt(server, name, arguments, scope))

    def servers(self) -> list[dict[str, Any]]:
        """The configured servers with their breaker state and session counts."""
        return self._send(_wire.servers())

    def sessions(self) -> list[dict[str, Any]]:
        """The live sessions (``server``, ``scope``, ``age_ms``, ``calls``, ...)."""
        return self._send(_wire.sessions())

    def close_scope(self, scope: str) -> int:
        """Closes the scope's sessions on every server; returns how many closed."""
        return self._send(_wire.close_scope(scope))

    def close_session(self, server: str, scope: str) -> int:
        """Closes the session of ``(server, scope)``; returns how many closed (0 or 1)."""
        return self._send(_wire.close_session(server, scope))

    def end_thread(self, thread_id: str, namespace: str | None = None) -> int:
        """The orchestrator thread is over: closes the sessions of its scope everywhere."""
        return self.close_scope(scope_for(thread_id, namespace))

    @contextmanager
    def thread(self, thread_id: str, namespace: str | None = None) -> Iterator[str]:
        """``with client.thread(id) as scope:`` a one-shot run whose sessions close at the end."""
        try:
            yield scope_for(thread_id, namespace)
        finally:
            self.end_thread(thread_id, namespace)

    def close(self) -> None:
        """Closes the HTTP connections (the agent's sessions stay open)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, request: _wire.Request[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    request.method,
                    request.path,
                    json=request.body,
                    headers=request.headers,
                    timeout=request.timeout or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as error:
                if not should_retry(error, request.retry_safe, attempt, self.retries):
                    raise unreachable(error, self.base_url) from error
                time.sleep(backoff_s(attempt))
                attempt += 1
                continue
            return request.answer(response)
