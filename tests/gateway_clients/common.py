"""What every Python client driver in this directory shares: its command line, its one
line of JSON output, its failure message and its overall deadline.

Pure standard library, so both venvs (mcp 2.x in .test-deps/venv, mcp 1.x in
.test-deps/venv-mcp1) can import it: the drivers run as scripts from this directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterable
from typing import Any, NoReturn

SCOPE_HEADER = "X-Mcpwatch-Scope"

#: Put before every tool name the scenarios call (``--tool-prefix``): ``demo__`` on the
#: gateway's aggregate endpoint ``/mcp``, where tools are named ``{server}__{name}``.
_TOOL_PREFIX = ""


def tool(name: str) -> str:
    """The name to call the demo tool ``name`` by (with ``--tool-prefix``)."""
    return _TOOL_PREFIX + name


class ScenarioFailed(Exception):
    """A scenario saw something other than what it expects; the message says what."""


def parse_args(
    description: str, scenarios: Iterable[str], default_timeout: float = 30.0, extra: Any = None
) -> argparse.Namespace:
    """The drivers' common flags: --url, --scope, --scenario, --timeout (plus `extra(parser)`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url", required=True, help="streamable-HTTP MCP endpoint, e.g. http://127.0.0.1:8800/mcp"
    )
    parser.add_argument("--scope", help=f"sent as the {SCOPE_HEADER} header on every request")
    parser.add_argument("--scenario", required=True, choices=sorted(scenarios))
    parser.add_argument(
        "--timeout",
        type=float,
        default=default_timeout,
        help=f"seconds for the whole scenario (default {default_timeout:g})",
    )
    parser.add_argument(
        "--tool-prefix",
        default="",
        help="put before every tool name called (demo__ on the aggregate endpoint /mcp)",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    global _TOOL_PREFIX
    _TOOL_PREFIX = args.tool_prefix
    return args


def scope_headers(scope: str | None) -> dict[str, str]:
    """The HTTP headers that carry the scope, none without one."""
    return {SCOPE_HEADER: scope} if scope else {}


def emit(result: dict[str, Any]) -> None:
    """Print the scenario's result: one JSON object, the last line on stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def fail(what: str, error: BaseException | None = None) -> NoReturn:
    """Say on stderr why the scenario failed and exit 1."""
    detail = ""
    if error is not None:
        detail = ": " + describe(error)
    sys.stderr.write(f"FAILED: {what}{detail}\n")
    sys.stderr.flush()
    sys.exit(1)


def describe(error: BaseException) -> str:
    """One readable line for an exception, looking inside exception groups (anyio wraps)."""
    inner = getattr(error, "exceptions", None)
    if inner:
        return "; ".join(describe(e) for e in inner)
    text = str(error) or type(error).__name__
    if isinstance(error, ScenarioFailed):
        return text
    return f"{type(error).__name__}: {text}"


def debug_traceback(error: BaseException) -> None:
    """The full traceback on stderr, for the test log."""
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


def text_of(result: Any) -> str:
    """The text of a tool result's first text block (both SDK generations name it `text`)."""
    for block in getattr(result, "content", []) or []:
        if getattr(block, "type", None) == "text":
            return block.text
    raise ScenarioFailed(f"no text content in {result!r}")


def counter_value(result: Any) -> int:
    """The demo `counter` tool's answer as an int; a tool error or non-number fails the scenario."""
    if getattr(result, "isError", None) or getattr(result, "is_error", None):
        raise ScenarioFailed(f"counter returned an error result: {result!r}")
    text = text_of(result)
    try:
        return int(text)
    except ValueError as error:
        raise ScenarioFailed(f"counter returned {text!r}, not a number") from error


CANNED_FORMATS = {
    "email": "canned@example.com",
    "uri": "https://example.com/canned",
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
}


def first_choice(schema: dict[str, Any]) -> Any:
    """The schema's default, else its first enum value or const, else None."""
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key) and "const" in schema[key][0]:
            return schema[key][0]["const"]
    return None


def canned_value(name: str, schema: dict[str, Any]) -> Any:
    """A plausible value for one field of an elicitation's requested schema."""
    choice = first_choice(schema)
    if choice is not None:
        return choice
    kind = schema.get("type")
    if kind == "array":
        return [canned_value(name, schema.get("items", {}))]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return CANNED_FORMATS.get(schema.get("format", ""), f"canned {name}")


def canned_form(requested_schema: dict[str, Any]) -> dict[str, Any]:
    """A canned answer for every field of an elicitation's form."""
    return {
        name: canned_value(name, field)
        for name, field in (requested_schema.get("properties") or {}).items()
    }
