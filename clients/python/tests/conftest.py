"""Every test talks to a real ``mcpwatch serve`` started by ``mcpwatch_client.testing``
(loaded with ``-p mcpwatch_client.testing`` in pyproject.toml)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpwatch_client import Client
from mcpwatch_client.testing import AgentProcess

#: The repository's root (clients/python/tests/ -> ../../..).
ROOT = Path(__file__).resolve().parents[3]

# Run from anywhere: the binary the project's build makes, unless MCPWATCH_BIN says otherwise.
os.environ.setdefault("MCPWATCH_BIN", str(ROOT / "target" / "debug" / "mcpwatch"))


@pytest.fixture
def client(mcpwatch_agent: AgentProcess) -> Iterator[Client]:
    """A sync client of the shared demo agent."""
    with mcpwatch_agent.client() as client:
        yield client


@pytest.fixture
def thread_id() -> str:
    """A thread id no other test uses (the demo agent is shared by the whole session)."""
    return f"t-{uuid.uuid4().hex[:12]}"


def stats(client: Client, scope: str | None) -> dict[str, int]:
    """The demo session's counters in ``scope``: ``calls`` (tool calls), ``counter``,
    ``cancelled``."""
    answer: dict[str, int] = json.loads(client.call_tool("demo", "stats", scope=scope).text)
    return answer


def scopes_of(client: Client, server: str = "demo") -> set[str]:
    """The scopes with a live session on ``server``."""
    return {s["scope"] for s in client.sessions() if s["server"] == server}
