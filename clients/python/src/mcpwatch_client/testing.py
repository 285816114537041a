"""Test your graphs against a real agent: ``mcpwatch serve`` on free ports, ended after the test.

In a ``conftest.py``::

    pytest_plugins = ["mcpwatch_client.testing"]

    def test_my_graph(mcpwatch_agent):            # one agent per test session, demo server
        client = mcpwatch_agent.client()
        ...

    def test_with_a_token(start_mcpwatch_agent):  # agents of your own, ended after the test
        agent = start_mcpwatch_agent(token="s3cret", config="[servers.demo]\\ntransport = ...")

The binary is ``MCPWATCH_BIN``, defaulting to ``target/debug/mcpwatch`` (relative to the
working directory). Without a config the agent runs the built-in ``demo`` server (tools
``echo``, ``add``, ``sleep``, ``fail``, ``counter``, ``stats``, ``traceparent``). Every
agent listens on ``127.0.0.1`` port 0, that is on ports the system picks free, and prints
the addresses it got. Stopping sends SIGTERM and expects the drained agent to exit 0.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from ._async_client import AsyncClient
from ._client import DEFAULT_RETRIES, Client

__all__ = ["AgentProcess", "mcpwatch_agent", "start_agent", "start_mcpwatch_agent"]

#: The line ``mcpwatch serve`` prints once it listens.
_ADDRESSES = re.compile(r"API on (http://\S+)\s+admin on (http://\S+)")
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0
_KEPT_LINES = 500


class AgentProcess:
    """A running ``mcpwatch serve``: ``api`` and ``admin`` URLs, its ``token``, its output.

    A context manager; ``stop()`` ends it (SIGTERM, then the drain) and returns the exit
    code. ``output()`` is its last lines of stdout and stderr, for failure messages.
    """

    def __init__(
        self, process: subprocess.Popen[str], token: str | None, config: Path | None
    ) -> None:
        self.process = process
        self.token = token
        self.api = ""
        self.admin = ""
        self._config = config
        self._lines: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line.rstrip("\n"))
            if not self._listening.is_set() and (found := _ADDRESSES.search(line)):
                self.api, self.admin = found[1], found[2]
                self._listening.set()
        self._listening.set()  # the process ended: stop waiting

    def wait_listening(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Waits for the addresses line; raises ``RuntimeError`` (after ending the process)
        when the agent exits or stays silent."""
        if self._listening.wait(timeout) and self.api:
            return
        self.kill()
        raise RuntimeError("mcpwatch serve did not start:\n" + "\n".join(self.output()))

    def client(
        self, *, retries: int = DEFAULT_RETRIES, transport: httpx.BaseTransport | None = None
    ) -> Client:
        """A ``Client`` of this agent, with its token."""
        return Client(self.api, self.token, retries=retries, transport=transport)

    def async_client(
        self, *, retries: int = DEFAULT_RETRIES, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncClient:
        """An ``AsyncClient`` of this agent, with its token."""
        return AsyncClient(self.api, self.token, retries=retries, transport=transport)

    def output(self) -> list[str]:
        """The agent's last lines of output."""
        return list(self._lines)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> int:
        """SIGTERM, then waits for the drain; returns the exit code (kills it past ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._cleanup()
        return self.process.returncode

    def kill(self) -> None:
        """Ends the agent and its children at once (its process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._config is not None:
            self._config.unlink(missing_ok=True)
            self._config = None

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_agent(
    config: str | None = None,
    *,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    binary: str | None = None,
) -> AgentProcess:
    """Starts ``mcpwatch serve`` on 127.0.0.1 free ports and waits until it listens.

    ``config`` is TOML text (``None``: no file, the built-in demo server); ``token``
    becomes ``agent.token``; ``env`` adds environment variables (``MCPWATCH_*`` override
    the config). ``binary`` defaults to ``MCPWATCH_BIN``, else ``target/debug/mcpwatch``.
    """
    binary = binary or os.environ.get("MCPWATCH_BIN") or "target/debug/mcpwatch"
    if not Path(binary).is_file():
        raise FileNotFoundError(f"no mcpwatch binary at {binary!r}: build it or set MCPWATCH_BIN")
    child_env = {k: v for k, v in os.environ.items() if k != "MCPWATCH_CONFIG"}
    child_env.pop("MCPWATCH_AGENT__TOKEN", None)
    child_env.update(env or {})
    child_env["MCPWATCH_AGENT__LISTEN"] = "127.0.0.1:0"
    child_env["MCPWATCH_AGENT__ADMIN_LISTEN"] = "127.0.0.1:0"
    if token is not None:
        child_env["MCPWATCH_AGENT__TOKEN"] = token
    config_path = _write_config(config) if config is not None else None
    command = [binary, "serve"] + (["--config", str(config_path)] if config_path else [])
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
        start_new_session=True,  # its own process group, so kill() reaches its children
    )
    agent = AgentProcess(process, token, config_path)
    agent.wait_listening()
    return agent


def _write_config(config: str) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="mcpwatch-", delete=False) as f:
        f.write(config)
    return Path(f.name)


def _stop_expecting_clean_exit(agent: AgentProcess) -> None:
    code = agent.stop()
    if code != 0:
        pytest.fail(f"mcpwatch serve exited {code} on SIGTERM:\n" + "\n".join(agent.output()))


@pytest.fixture(scope="session")
def mcpwatch_agent() -> Iterator[AgentProcess]:
    """One agent with the built-in demo server for the whole test session (use your own
    scopes per test). Fails the session's teardown if the agent does not exit 0."""
    agent = start_agent()
    try:
        yield agent
    finally:
        _stop_expecting_clean_exit(agent)


@pytest.fixture
def start_mcpwatch_agent() -> Iterator[Callable[..., AgentProcess]]:
    """A function with ``start_agent``'s arguments; every agent it starts ends after the test."""
    started: list[AgentProcess] = []

    def start(
        config: str | None = None,
        *,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AgentProcess:
        agent = start_agent(config, token=token, env=env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        _stop_expecting_clean_exit(agent)
