"""Every error class from its real trigger at a real agent; parsing of the error body."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from conftest import stats

import mcpwatch_client as mw
from mcpwatch_client import Client
from mcpwatch_client._errors import error_from_answer, parse_retry_after
from mcpwatch_client.testing import AgentProcess

DEMO = '[servers.demo]\ntransport = "builtin"\n'
BROKEN = (
    '[servers.broken]\ntransport = "stdio"\ncommand = "/nonexistent/mcp-server"\n'
    'breaker = { failure_threshold = 1, cool_down = "60s" }\n'
)


def test_unknown_server(client: Client) -> None:
    with pytest.raises(mw.UnknownServer) as error:
        client.call_tool("nope", "echo")
    assert isinstance(error.value, mw.ClientError)
    assert (error.value.status, error.value.kind, error.value.not_processed) == (
        404,
        "unknown_server",
        True,
    )
    assert "nope" in error.value.message


def test_bad_arguments_are_the_tools_error(client: Client, thread_id: str) -> None:
    # The server refuses arguments that do not fit the schema with an isError result.
    result = client.call_tool("demo", "add", {"a": "x", "b": 1}, scope=thread_id)
    assert result.is_error
    assert "invalid type" in result.text
    with pytest.raises(mw.ToolError) as error:
        client.call_tool("demo", "add", {"a": 1}, scope=thread_id, raise_on_tool_error=True)
    assert error.value.status == 200
    assert "missing field `b`" in error.value.message
    assert error.value.result.is_error
    client.close_scope(thread_id)


def test_malformed_requests_are_invalid(client: Client, thread_id: str) -> None:
    with pytest.raises(mw.InvalidRequest, match="tool not found"):
        client.call_tool("demo", "no_such_tool")
    with pytest.raises(mw.InvalidRequest, match="timeout_ms"):
        client.call_tool("demo", "echo", {"message": "x"}, timeout_ms=0)
    with pytest.raises(mw.InvalidRequest, match="scope"):
        client.call_tool("demo", "echo", {"message": "x"}, scope="not a scope")
    with pytest.raises(mw.InvalidRequest, match="Idempotency-Key"):
        client.call_tool("demo", "echo", {"message": "x"}, idempotency_key="x" * 300)


def test_a_key_reused_with_another_request_is_refused(client: Client, thread_id: str) -> None:
    key = f"reuse-{thread_id}"
    first = client.call_tool("demo", "counter", scope=thread_id, idempotency_key=key)
    again = client.call_tool("demo", "counter", scope=thread_id, idempotency_key=key)
    assert first.text == again.text == "1", "the same key and request: the stored answer"
    with pytest.raises(mw.InvalidRequest, match="Idempotency-Key") as error:
        client.call_tool("demo", "counter", scope=thread_id, idempotency_key=key, timeout_ms=999)
    assert error.value.not_processed
    assert stats(client, thread_id)["calls"] == 1
    client.close_scope(thread_id)


def test_timeout_keeps_the_session(client: Client, thread_id: str) -> None:
    assert client.call_tool("demo", "counter", scope=thread_id).text == "1"
    started = time.monotonic()
    with pytest.raises(mw.Timeout) as error:
        client.call_tool("demo", "sleep", {"ms": 2000}, scope=thread_id, timeout_ms=100)
    assert time.monotonic() - started < 1.5
    assert (error.value.status, error.value.kind, error.value.not_processed) == (
        504,
        "timeout",
        False,
    )
    assert client.call_tool("demo", "counter", scope=thread_id).text == "2", "state survives"
    client.close_scope(thread_id)


def test_connect_failed_then_breaker_open(
    start_mcpwatch_agent: Callable[..., AgentProcess],
) -> None:
    agent = start_mcpwatch_agent(DEMO + BROKEN)
    with agent.client() as client:
        with pytest.raises(mw.ConnectFailed) as failed:
            client.call_tool("broken", "echo")
        assert isinstance(failed.value, mw.UpstreamError)
        assert (failed.value.status, failed.value.not_processed) == (502, True)
        with pytest.raises(mw.BreakerOpen) as open_:
            client.call_tool("broken", "echo")
        assert isinstance(open_.value, mw.Unavailable)
        assert (open_.value.status, open_.value.not_processed) == (503, True)
        broken = next(s for s in client.servers() if s["name"] == "broken")
        assert broken["breaker"] == "open"
        assert client.call_tool("demo", "echo", {"message": "fine"}).text == "fine"


def test_a_token_guards_the_api(
    start_mcpwatch_agent: Callable[..., AgentProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = start_mcpwatch_agent(token="s3cret-token")
    monkeypatch.delenv("MCPWATCH_TOKEN", raising=False)
    with Client(agent.api) as anonymous, pytest.raises(mw.Unauthorized) as refused:
        anonymous.call_tool("demo", "echo", {"message": "x"})
    assert (refused.value.status, refused.value.not_processed) == (401, True)
    with Client(agent.api, "wrong") as wrong, pytest.raises(mw.Unauthorized, match="wrong"):
        wrong.sessions()
    with agent.client() as client:
        assert client.call_tool("demo", "echo", {"message": "x"}).text == "x"
    monkeypatch.setenv("MCPWATCH_TOKEN", "s3cret-token")
    with Client(agent.api) as from_env:
        assert from_env.call_tool("demo", "echo", {"message": "env"}).text == "env"


def test_payload_too_large(start_mcpwatch_agent: Callable[..., AgentProcess]) -> None:
    agent = start_mcpwatch_agent(DEMO + "[agent]\nmax_body_bytes = 2048\n")
    with agent.client() as client, pytest.raises(mw.PayloadTooLarge) as error:
        client.call_tool("demo", "echo", {"message": "x" * 4096})
    assert (error.value.status, error.value.not_processed) == (413, True)


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _in_flight(client: Client, scope: str) -> bool:
    return any(s["scope"] == scope and s["in_flight"] for s in client.sessions())


def _sleep_in_background(client: Client, scope: str, ms: int) -> threading.Thread:
    def sleep() -> None:
        client.call_tool("demo", "sleep", {"ms": ms}, scope=scope)

    thread = threading.Thread(target=sleep)
    thread.start()
    _wait_until(lambda: _in_flight(client, scope), "the sleep to start")
    return thread


def test_pool_exhausted(start_mcpwatch_agent: Callable[..., AgentProcess]) -> None:
    agent = start_mcpwatch_agent(DEMO + '[agent]\nmax_in_flight = 1\nqueue_timeout = "100ms"\n')
    with agent.client() as client:
        busy = _sleep_in_background(client, "busy", 1500)
        with pytest.raises(mw.PoolExhausted) as error:
            client.call_tool("demo", "echo", {"message": "x"})
        assert (error.value.status, error.value.not_processed) == (503, True)
        busy.join(10)


def test_shutting_down(start_mcpwatch_agent: Callable[..., AgentProcess]) -> None:
    agent = start_mcpwatch_agent()
    with agent.client() as client:
        in_flight = _sleep_in_background(client, "draining", 1500)
        agent.process.send_signal(signal.SIGTERM)
        _wait_until(lambda: httpx.get(f"{agent.admin}/readyz").status_code == 503, "draining")
        with pytest.raises(mw.ShuttingDown) as error:
            client.call_tool("demo", "echo", {"message": "x"})
        assert (error.value.status, error.value.not_processed) == (503, True)
        in_flight.join(10)
        assert not in_flight.is_alive(), "the call in flight finished during the drain"


def test_no_agent_is_unreachable_and_not_processed() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", retries=1) as client:
        started = time.monotonic()
        with pytest.raises(mw.AgentUnreachable) as error:
            client.call_tool("demo", "echo", {"message": "x"})
        assert time.monotonic() - started < 5
    assert error.value.status is None
    assert error.value.not_processed, "a refused connect never sent the request"
    assert isinstance(error.value.__cause__, httpx.ConnectError)


def test_an_unknown_kind_keeps_its_kind_in_the_base_class() -> None:
    error = error_from_answer(500, {"error": {"type": "brand_new", "message": "m"}}, None)
    assert type(error) is mw.McpwatchError
    assert (error.kind, error.status, error.message, error.not_processed) == (
        "brand_new",
        500,
        "m",
        False,
    )


def test_may_have_run_in_the_body_wins_over_the_kind_list() -> None:
    ran = error_from_answer(503, {"error": {"type": "breaker_open", "may_have_run": True}}, None)
    assert isinstance(ran, mw.BreakerOpen)
    assert not ran.not_processed
    never = error_from_answer(504, {"error": {"type": "timeout", "may_have_run": False}}, None)
    assert isinstance(never, mw.Timeout)
    assert never.not_processed


def test_an_answer_that_is_not_the_agents() -> None:
    error = error_from_answer(502, None, "7")
    assert type(error) is mw.McpwatchError
    assert (error.kind, error.status, error.retry_after, error.not_processed) == (
        "unknown",
        502,
        7.0,
        False,
    )


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    seconds = parse_retry_after(in_a_minute)
    assert seconds is not None
    assert 55 < seconds <= 61


def test_the_error_groups_read_naturally() -> None:
    groups: dict[type[mw.McpwatchError], set[type[mw.McpwatchError]]] = {
        mw.ClientError: {mw.InvalidRequest, mw.Unauthorized, mw.UnknownServer, mw.PayloadTooLarge},
        mw.Unavailable: {mw.RateLimited, mw.BreakerOpen, mw.PoolExhausted, mw.ShuttingDown},
        mw.UpstreamError: {
            mw.TransportClosed,
            mw.SessionExpired,
            mw.ConnectFailed,
            mw.InitializeFailed,
            mw.HttpStatus,
            mw.ResponseTooLarge,
            mw.ProtocolError,
        },
    }
    for group, members in groups.items():
        assert all(issubclass(member, group) for member in members)
    everything = (
        set().union(*groups.values())
        | set(groups)
        | {
            mw.Timeout,
            mw.Cancelled,
            mw.AgentUnreachable,
            mw.ToolError,
        }
    )
    assert all(issubclass(cls, mw.McpwatchError) for cls in everything)
    assert {name for name in mw.__all__ if name.endswith(("Error", "Unreachable"))} <= {
        cls.__name__ for cls in everything | {mw.McpwatchError}
    }
