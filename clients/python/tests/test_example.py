"""examples/python/langgraph_tool.py runs against a live agent (it replaced the
standard-library example that tests/agent.rs ran)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

from mcpwatch_client.testing import AgentProcess

EXAMPLE = ROOT / "examples" / "python" / "langgraph_tool.py"


def test_the_langgraph_example_runs_against_a_live_agent(mcpwatch_agent: AgentProcess) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, "MCPWATCH_AGENT": mcpwatch_agent.api},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("ok"), done.stdout
    assert "thread A counter: ['1', '2']  thread B counter: ['1']" in done.stdout
