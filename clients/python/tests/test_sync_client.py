"""The sync Client over the whole /v1 API, against the real agent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import scopes_of, stats
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from mcpwatch_client import Client, InvalidRequest, scope_for
from mcpwatch_client.testing import AgentProcess


class RecordingTransport(httpx.HTTPTransport):
    """httpx's own transport that also keeps the requests it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


def test_calls_in_a_scope_share_a_session_and_scopes_do_not(client: Client, thread_id: str) -> None:
    a, b = scope_for(thread_id + "-a"), scope_for(thread_id + "-b")
    first = client.call_tool("demo", "counter", scope=a)
    assert (first.text, first.session_reused, first.is_error) == ("1", False, False)
    second = client.call_tool("demo", "counter", scope=a)
    assert (second.text, second.session_reused) == ("2", True)
    assert second.session_age_ms >= 0
    assert second.duration_ms > 0
    assert client.call_tool("demo", "counter", scope=b).text == "1"
    assert client.call_tool("demo", "counter", scope=a).text == "3"
    assert {a, b} <= scopes_of(client)
    assert client.close_scope(a) + client.close_scope(b) == 2


def test_call_result_reads_content(client: Client) -> None:
    result = client.call_tool("demo", "echo", {"message": "hello"})
    assert result.text == "hello"
    assert result.content == [{"type": "text", "text": "hello"}]
    assert result.structured is None
    assert result.result["isError"] is False


def test_the_scope_goes_in_the_header_and_the_body(
    mcpwatch_agent: AgentProcess, thread_id: str
) -> None:
    transport = RecordingTransport()
    with mcpwatch_agent.client(transport=transport) as client:
        client.call_tool("demo", "echo", {"message": "x"}, scope=thread_id)
        client.call_tool("demo", "echo", {"message": "x"})
        client.close_scope(thread_id)
    with_scope, without = transport.sent[0], transport.sent[1]
    assert with_scope.headers["x-mcpwatch-scope"] == thread_id
    assert b'"scope":"' + thread_id.encode() + b'"' in with_scope.content.replace(b" ", b"")
    assert "x-mcpwatch-scope" not in without.headers
    assert b"scope" not in without.content


def test_listings_take_the_scope_from_the_header(client: Client, thread_id: str) -> None:
    tools = {tool["name"]: tool for tool in client.list_tools("demo", scope=thread_id)}
    assert {"echo", "add", "counter", "sleep", "fail", "stats"} <= set(tools)
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    assert thread_id in scopes_of(client), "the listing opened the session in that scope"
    demo = next(server for server in client.servers() if server["name"] == "demo")
    assert demo["breaker"] == "closed"
    assert client.close_scope(thread_id) == 1


def test_end_thread_closes_the_threads_sessions(client: Client) -> None:
    thread_id = "conversation 7/user 42"  # hashed into a scope
    scope = scope_for(thread_id)
    assert client.call_tool("demo", "counter", scope=scope).text == "1"
    assert scope in scopes_of(client)
    assert client.end_thread(thread_id) == 1
    assert scope not in scopes_of(client)
    assert client.end_thread(thread_id) == 0
    assert client.call_tool("demo", "counter", scope=scope).text == "1", "a new session"
    assert client.close_session("demo", scope) == 1
    assert client.close_session("demo", scope) == 0


def test_end_thread_with_a_namespace(client: Client, thread_id: str) -> None:
    scope = scope_for(thread_id, "alice")
    assert scope == f"alice:{thread_id}"
    client.call_tool("demo", "counter", scope=scope)
    assert client.end_thread(thread_id) == 0, "another scope"
    assert client.end_thread(thread_id, "alice") == 1


def test_a_thread_block_ends_the_thread(client: Client, thread_id: str) -> None:
    with client.thread(thread_id) as scope:
        assert client.call_tool("demo", "counter", scope=scope).text == "1"
        assert scope in scopes_of(client)
    assert scope not in scopes_of(client)


def test_scope_path_segments_are_url_encoded(client: Client) -> None:
    # "a/b" is not a scope; encoded, it reaches the handler (400), not another route (404).
    with pytest.raises(InvalidRequest) as refused:
        client.close_scope("a/b")
    assert refused.value.status == 400


def test_stats_count_the_sessions_calls(client: Client, thread_id: str) -> None:
    client.call_tool("demo", "echo", {"message": "x"}, scope=thread_id)
    client.call_tool("demo", "counter", scope=thread_id)
    assert stats(client, thread_id) == {"calls": 2, "cancelled": 0, "counter": 1}
    client.close_scope(thread_id)


def test_agent_url_and_token_come_from_the_environment(
    mcpwatch_agent: AgentProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPWATCH_AGENT", mcpwatch_agent.api + "/")
    with Client() as client:
        assert client.base_url == mcpwatch_agent.api
        assert client.call_tool("demo", "echo", {"message": "env"}).text == "env"
    monkeypatch.delenv("MCPWATCH_AGENT")
    assert Client().base_url == "http://127.0.0.1:8700"


class OtlpSink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and drops them (the agent traces only when it exports)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OtlpSink)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_trace_context_reaches_the_server(
    start_mcpwatch_agent: Callable[..., AgentProcess], otlp_sink: str
) -> None:
    agent = start_mcpwatch_agent(env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink})
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    parent = SpanContext(
        trace_id=trace_id,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with agent.client() as client:
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            seen = client.call_tool("demo", "traceparent").text
        finally:
            context.detach(token)
    version, seen_trace_id, _span_id, _flags = seen.split("-")
    assert (version, seen_trace_id) == ("00", f"{trace_id:032x}"), seen
