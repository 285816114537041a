"""Which orchestrator thread is running: from a LangGraph ToolRuntime, or from the
LangChain run config of the current context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["current_thread_id", "thread_id_of"]


def thread_id_of(runtime: object | None) -> str | None:
    """The thread of a LangGraph ``ToolRuntime``: ``runtime.context["thread_id"]`` (where
    deer-flow puts it), else ``runtime.config["configurable"]["thread_id"]``."""
    if runtime is None:
        return None
    context = getattr(runtime, "context", None)
    if isinstance(context, Mapping) and context.get("thread_id") is not None:
        return str(context["thread_id"])
    return _configured_thread(getattr(runtime, "config", None))


def current_thread_id() -> str | None:
    """The thread of the LangChain / LangGraph run this code runs in (``None`` outside one,
    or without langchain-core). In async code this needs Python 3.11+, as LangGraph's
    ``get_config()`` does."""
    try:
        from langchain_core.runnables.config import var_child_runnable_config  # noqa: PLC0415
    except ImportError:
        return None
    return _configured_thread(var_child_runnable_config.get())


def _configured_thread(config: Any) -> str | None:
    if not isinstance(config, Mapping):
        return None
    configurable = config.get("configurable")
    if not isinstance(configurable, Mapping) or configurable.get("thread_id") is None:
        return None
    return str(configurable["thread_id"])
