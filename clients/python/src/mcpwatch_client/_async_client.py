"""``AsyncClient``: the asynchronous client of the agent's ``/v1`` API.

The same surface as ``Client`` (see its docstrings), with ``await``; the request shapes
and the retry rule are shared (``_wire``, ``_retry``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _wire
from ._client import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from ._result import CallResult
from ._retry import backoff_s, should_retry, unreachable
from ._scope import scope_for
from ._settings import base_url_of, default_headers

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """An asynchronous client of a running mcpwatch agent; an async context manager.

    Arguments as for ``Client`` (``transport`` is an ``httpx.AsyncBaseTransport``). One
    client serves any number of concurrent tasks on its event loop.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url_of(base_url)
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=default_headers(token),
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    async def call_tool(
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
        """Calls ``tool`` on ``server`` in ``scope``; see ``Client.call_tool``."""
        return await self._send(
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

    async def list_tools(self, server: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        """The server's tools."""
        return await self._send(_wire.list_tools(server, scope))

    async def list_resources(self, server: str, *, scope: str | None = None) -> dict[str, Any]:
        """The server's ``resources`` and ``resource_templates``."""
        return await self._send(_wire.list_resources(server, scope))

    async def read_resource(
        self, server: str, uri: str, *, scope: str | None = None
    ) -> dict[str, Any]:
        """The MCP ``ReadResourceResult`` of ``uri``."""
        return await self._send(_wire.read_resource(server, uri, scope))

    async def list_prompts(self, server: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        """The server's prompts."""
        return await self._send(_wire.list_prompts(server, scope))

    async def get_prompt(
        self,
        server: str,
        name: str,
        arguments: dict[str, str] | None = None,
        *,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """The MCP ``GetPromptResult`` of prompt ``name``."""
        return await self._send(_wire.get_prompt(server, name, arguments, scope))

    async def servers(self) -> list[dict[str, Any]]:
        """The configured servers with their breaker state and session counts."""
        return await self._send(_wire.servers())

    async def sessions(self) -> list[dict[str, Any]]:
        """The live sessions."""
        return await self._send(_wire.sessions())

    async def close_scope(self, scope: str) -> int:
        """Closes the scope's sessions on every server; returns how many closed."""
        return await self._send(_wire.close_scope(scope))

    async def close_session(self, server: str, scope: str) -> int:
        """Closes the session of ``(server, scope)``; returns how many closed (0 or 1)."""
        return await self._send(_wire.close_session(server, scope))

    async def end_thread(self, thread_id: str, namespace: str | None = None) -> int:
        """The orchestrator thread is over: closes the sessions of its scope everywhere."""
        return await self.close_scope(scope_for(thread_id, namespace))

    @asynccontextmanager
    async def thread(self, thread_id: str, namespace: str | None = None) -> AsyncIterator[str]:
        """``async with client.thread(id) as scope:`` a one-shot run, sessions closed at the end."""
        try:
            yield scope_for(thread_id, namespace)
        finally:
            await self.end_thread(thread_id, namespace)

    async def aclose(self) -> None:
        """Closes the HTTP connections (the agent's sessions stay open)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, request: _wire.Request[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    request.method,
                    request.path,
                    json=request.body,
                    headers=request.headers,
                    timeout=request.timeout or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as error:
                if not should_retry(error, request.retry_safe, attempt, self.retries):
                    raise unreachable(error, self.base_url) from error
                await asyncio.sleep(backoff_s(attempt))
                attempt += 1
                continue
            return request.answer(response)
