"""``CallResult``: a tool call's answer from the agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CallResult"]


@dataclass(frozen=True)
class CallResult:
    """The MCP ``CallToolResult`` of one call, with the agent's session facts.

    ``result`` is the MCP result as sent (``content``, ``isError``, ``structuredContent``,
    ``_meta``); the properties read the common parts. ``session_reused`` says whether the
    call ran on a pooled session that already existed (false: the session was opened for
    it), ``session_age_ms`` how old that session is, ``duration_ms`` how long the agent
    took.
    """

    result: dict[str, Any]
    session_reused: bool
    session_age_ms: int
    duration_ms: float

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> CallResult:
        """Reads ``{"result", "session": {"reused", "age_ms"}, "duration_ms"}``."""
        session = answer.get("session") or {}
        return cls(
            result=answer.get("result") or {},
            session_reused=bool(session.get("reused", False)),
            session_age_ms=int(session.get("age_ms", 0)),
            duration_ms=float(answer.get("duration_ms", 0.0)),
        )

    @property
    def content(self) -> list[dict[str, Any]]:
        """The content blocks (text, image, audio, resource, resource_link)."""
        content = self.result.get("content")
        return content if isinstance(content, list) else []

    @property
    def text(self) -> str:
        """The text blocks, joined by newlines (``""`` when there are none)."""
        return "\n".join(
            str(block.get("text", "")) for block in self.content if block.get("type") == "text"
        )

    @property
    def structured(self) -> Any:
        """``structuredContent`` (``None`` when the tool sent none)."""
        return self.result.get("structuredContent")

    @property
    def is_error(self) -> bool:
        """True when the tool reported failure (``isError: true``)."""
        return bool(self.result.get("isError", False))
