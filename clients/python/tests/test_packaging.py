"""The installed distribution: httpx is the only core dependency, the extras are as
documented, nothing depends on `mcp` or langchain-mcp-adapters, and the typing marker ships."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata, resources

import pytest

import mcpwatch_client


def test_the_core_needs_only_httpx() -> None:
    requires = metadata.requires("mcpwatch-client") or []
    core = [r for r in requires if "extra ==" not in r]
    assert [r.split(">")[0].split("<")[0].strip() for r in core] == ["httpx"]
    extras = {
        r.split("extra ==")[1].strip().strip("'\""): r.split(";")[0].strip()
        for r in requires
        if "extra ==" in r
    }
    assert set(extras) == {"langchain", "langgraph", "mcp2"}
    assert extras["langchain"].startswith("langchain-core")
    assert extras["langgraph"].startswith("langgraph-checkpoint")
    assert extras["mcp2"].startswith("httpx2")
    names = " ".join(requires)
    assert "langchain-mcp-adapters" not in names
    assert not any(r.split(">")[0].split("<")[0].split("=")[0].strip() == "mcp" for r in requires)


def test_the_typing_marker_ships() -> None:
    assert resources.files(mcpwatch_client).joinpath("py.typed").is_file()


BLOCKED = ["langchain_core", "langgraph", "httpx2", "opentelemetry", "langchain"]


@pytest.mark.parametrize("module", ["mcpwatch_client", "mcpwatch_client.gateway"])
def test_imports_without_any_optional_package(module: str) -> None:
    script = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # importing it raises ImportError
import {module}
from mcpwatch_client import Client, scope_for
from mcpwatch_client._thread import current_thread_id
assert current_thread_id() is None
with Client("http://127.0.0.1:1") as client:
    pass
if "{module}" == "mcpwatch_client.gateway":
    from mcpwatch_client.gateway import scope_header
    try:
        from mcpwatch_client.gateway import ScopeAuth
    except ImportError as error:
        assert "httpx2" in str(error), error
    else:
        raise AssertionError("ScopeAuth without httpx2")
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
