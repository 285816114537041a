"""``ScopeAuth``: the thread's scope on every request of an ``mcp`` 2.x client (extra
``[mcp2]``). Imported lazily by ``mcpwatch_client.gateway``."""

from __future__ import annotations

from collections.abc import Generator

import httpx2

from ._scope import scope_for
from ._thread import current_thread_id
from ._wire import SCOPE_HEADER

__all__ = ["ScopeAuth"]


class ScopeAuth(httpx2.Auth):
    """Sets ``X-Mcpwatch-Scope`` on each request: ``scope`` when given, else the scope
    of the LangGraph thread the request is made in (``scope_for(thread_id, namespace)``),
    else nothing (the agent's ``default`` scope).

    ``httpx2.AsyncClient(auth=ScopeAuth())`` for ``streamable_http_client(url,
    http_client=...)``: mcp 2.x sends each message in the caller's context, so one
    long-lived client carries each thread's own scope.
    """

    def __init__(self, scope: str | None = None, *, namespace: str | None = None) -> None:
        self.scope = scope
        self.namespace = namespace

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        scope = self.scope
        if scope is None and (thread_id := current_thread_id()) is not None:
            scope = scope_for(thread_id, self.namespace)
        if scope is not None:
            request.headers[SCOPE_HEADER] = scope
        yield request
