"""Scopes and idempotency keys: from an orchestrator's thread and tool call to the agent's names.

A *scope* is the agent's unit of state: calls in one scope share one pooled session per
server, so a stateful server (a browser, a shell) keeps its state between the steps of a
conversation. The agent accepts 1 to 200 characters of ``[A-Za-z0-9._:@-]``; thread ids
from the wild (``"user 42/conv 7"``, UUIDs with braces, non-ASCII names) are hashed into
that alphabet instead of being refused.
"""

from __future__ import annotations

import hashlib
import json
import re

__all__ = ["HASHED_PREFIX", "scope_for", "step_key"]

#: What a scope made by hashing starts with. Valid ids that start with it are hashed
#: too, so a readable scope can never collide with a hashed one.
HASHED_PREFIX = "h:"

_VALID_SCOPE = re.compile(r"[A-Za-z0-9._:@-]{1,200}")
_HASH_CHARS = 48


def scope_for(thread_id: str, namespace: str | None = None) -> str:
    """The scope of an orchestrator thread (optionally inside a namespace, e.g. a user id).

    ``"{namespace}:{thread_id}"`` (or ``thread_id`` alone) when that is a valid scope,
    otherwise ``"h:"`` followed by 48 hex characters of
    ``sha256(namespace + "\\0" + thread_id)``. The same inputs always give the same scope.
    """
    readable = f"{namespace}:{thread_id}" if namespace else thread_id
    if _VALID_SCOPE.fullmatch(readable) and not readable.startswith(HASHED_PREFIX):
        return readable
    digest = hashlib.sha256(f"{namespace or ''}\0{thread_id}".encode()).hexdigest()
    return HASHED_PREFIX + digest[:_HASH_CHARS]


def step_key(
    scope: str | None, tool_call_id: str, server: str, tool: str, *, task: str | None = None
) -> str:
    """The ``Idempotency-Key`` of one step: a tool call of one thread on one server.

    A re-run of the same step (a LangGraph ``RetryPolicy``, a resume from a checkpoint)
    carries the same ``tool_call_id`` and so the same key: the agent joins the first call
    or returns its answer instead of running the tool again. All parts are hashed,
    because tool-call ids repeat across threads (fake models in tests script the same
    ids, and some providers number calls per conversation). ``task`` optionally names
    the orchestrator's unit of work too: ``load_tools`` passes LangGraph's checkpoint
    namespace of the ToolNode task, which a re-run or a resume keeps and a new turn
    changes, so a tool-call id repeated in a later turn is a new step.
    """
    parts = json.dumps([scope, tool_call_id, server, tool, task], ensure_ascii=True)
    return "step-" + hashlib.sha256(parts.encode()).hexdigest()
