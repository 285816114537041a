"""W3C trace context on outgoing requests, when OpenTelemetry is installed.

The agent parents its spans on the ``traceparent`` header and passes the context on to
the MCP server in ``params._meta``, so a call shows up inside the caller's trace. Without
``opentelemetry`` this is a no-op that costs one comparison.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

__all__ = ["inject_trace_context"]

_inject: Callable[[MutableMapping[str, str]], None] | None
try:
    from opentelemetry.propagate import inject as _otel_inject
except ImportError:  # no opentelemetry: nothing to propagate
    _inject = None
else:
    _inject = _otel_inject


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Adds ``traceparent`` (and ``tracestate``, baggage) of the current span to ``headers``."""
    if _inject is not None:
        _inject(headers)
