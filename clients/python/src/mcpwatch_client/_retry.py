"""When a request that got no answer from the agent is sent again, and how soon.

With an ``Idempotency-Key`` (and for reads and deletes) every transport failure is
retried with the same key: the agent joins the first attempt or returns its answer, so
the tool runs once. Without a key only a failed connect is retried: the request never
left, while after a dropped connection the call may have run.
"""

from __future__ import annotations

import httpx

from ._errors import AgentUnreachable

__all__ = ["backoff_s", "should_retry", "unreachable"]

_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0


def never_sent(error: httpx.TransportError) -> bool:
    """True when the request certainly did not reach the agent."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))


def should_retry(error: httpx.TransportError, retry_safe: bool, attempt: int, retries: int) -> bool:
    """Whether attempt number ``attempt`` (0-based) that failed with ``error`` is retried."""
    return attempt < retries and (retry_safe or never_sent(error))


def backoff_s(attempt: int) -> float:
    """The pause before retry number ``attempt + 1``: 50 ms, doubling, at most 1 s."""
    return float(min(_FIRST_BACKOFF_S * 2**attempt, _MAX_BACKOFF_S))


def unreachable(error: httpx.TransportError, base_url: str) -> AgentUnreachable:
    """The error raised when the agent gave no answer."""
    return AgentUnreachable(
        f"no answer from the agent at {base_url}: {type(error).__name__}: {error}",
        kind="agent_unreachable",
        status=None,
        not_processed=never_sent(error),
    )
