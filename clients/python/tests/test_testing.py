"""mcpwatch_client.testing itself: it starts, reports and ends agents."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mcpwatch_client.testing import start_agent


def test_an_agent_starts_on_free_ports_and_drains_to_exit_0() -> None:
    with start_agent() as agent:
        assert agent.api.startswith("http://127.0.0.1:")
        assert agent.admin.startswith("http://127.0.0.1:")
        assert agent.api != agent.admin
        with agent.client() as client:
            assert client.call_tool("demo", "echo", {"message": "up"}).text == "up"
        assert any("API on" in line for line in agent.output())
    assert agent.process.returncode == 0


def test_a_missing_binary_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="MCPWATCH_BIN"):
        start_agent(binary="/nonexistent/mcpwatch")


def test_an_agent_that_cannot_start_is_reported_with_its_output() -> None:
    with pytest.raises(RuntimeError, match="did not start") as error:
        start_agent('[servers.bad]\ntransport = "warp-drive"\n')
    assert "warp-drive" in str(error.value), "the agent's own complaint is in the message"


def test_kill_ends_the_agent_and_with_it_its_server_children() -> None:
    config = (
        '[servers.child]\ntransport = "stdio"\ncommand = "{bin}"\n'
        'args = ["demo-server", "--stdio"]\nwarm = true\n'
    )
    with start_agent(config.format(bin=os.environ["MCPWATCH_BIN"])) as agent:
        with agent.client() as client:
            [session] = [s for s in client.sessions() if s["server"] == "child"]
        child_pid = session["pid"]
        assert running(child_pid)
        agent.kill()
        assert agent.process.returncode != 0
    deadline = time.monotonic() + 10
    while running(child_pid):
        assert time.monotonic() < deadline, "the server child outlived its agent"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
