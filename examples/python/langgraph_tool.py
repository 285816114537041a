#!/usr/bin/env python3
"""Calling MCP tools through a running mcpwatch agent, the way a LangGraph node would.

Standard library only. Each orchestrator thread is an mcpwatch *scope*: its calls go to
the same pooled MCP session (so a stateful server keeps its state between steps), and
ending the thread closes its sessions. An Idempotency-Key per step makes a retried HTTP
request join the first attempt instead of running the tool twice.

Run an agent (`cargo run --release -- serve`), then:

    python3 examples/python/langgraph_tool.py            # agent at http://127.0.0.1:8700
    MCPWATCH_AGENT=http://127.0.0.1:9000 MCPWATCH_TOKEN=... python3 examples/python/langgraph_tool.py
"""

import json
import os
import sys
import urllib.error
import urllib.request
import uuid


class McpwatchError(Exception):
    """An error answered by the agent: `kind` is the ErrorKind (timeout, breaker_open, ...)."""

    def __init__(self, status, kind, message, retry_after=None):
        super().__init__(f"{status} {kind}: {message}")
        self.status, self.kind, self.message, self.retry_after = status, kind, message, retry_after

    @property
    def retryable(self):
        """Worth retrying later with the same Idempotency-Key."""
        return self.kind in {"breaker_open", "pool_exhausted", "rate_limited", "timeout", "transport_closed",
                             "session_expired", "connect_failed"}


class ToolFailed(Exception):
    """The tool ran and reported failure (`isError: true`)."""


class Mcpwatch:
    """A tiny client of the agent's /v1 API."""

    def __init__(self, base_url=None, token=None, timeout_s=60.0):
        self.base_url = (base_url or os.environ.get("MCPWATCH_AGENT", "http://127.0.0.1:8700")).rstrip("/")
        self.token = token if token is not None else os.environ.get("MCPWATCH_TOKEN")
        self.timeout_s = timeout_s

    def _request(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            try:
                detail = json.load(error).get("error", {})
            except ValueError:
                detail = {}
            raise McpwatchError(error.code, detail.get("type", "http_status"), detail.get("message", str(error)),
                                error.headers.get("Retry-After")) from None

    def call_tool(self, server, tool, arguments=None, thread_id=None, timeout_ms=None, idempotency_key=None):
        """Calls `tool` on `server` in the thread's scope; returns the MCP CallToolResult."""
        body = {"server": server, "tool": tool, "arguments": arguments or {}}
        if thread_id is not None:
            body["scope"] = thread_id
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._request("POST", "/v1/tools/call", body, headers)
        result = answer["result"]
        if result.get("isError"):
            raise ToolFailed(_text(result))
        return result

    def end_thread(self, thread_id):
        """The orchestrator thread is over: close its sessions on every server."""
        return self._request("DELETE", f"/v1/scopes/{thread_id}")["closed"]

    def tools(self, server):
        return self._request("GET", f"/v1/servers/{server}/tools")["tools"]


def _text(result):
    return "".join(block.get("text", "") for block in result.get("content", []) if block.get("type") == "text")


def mcp_tool(client, server, tool):
    """A LangGraph-style tool: a function of (state, **arguments) that uses state["thread_id"] as the
    scope and a fresh idempotency key per step (reuse the key when retrying the same step)."""

    def run(state, **arguments):
        step_key = state.get("step_key") or str(uuid.uuid4())
        result = client.call_tool(server, tool, arguments, thread_id=state["thread_id"], idempotency_key=step_key)
        return _text(result)

    run.__name__ = f"{server}__{tool}"
    return run


def main():
    client = Mcpwatch()
    names = [t["name"] for t in client.tools("demo")]
    print("demo tools:", ", ".join(sorted(names)))
    counter = mcp_tool(client, "demo", "counter")
    echo = mcp_tool(client, "demo", "echo")

    thread_a = {"thread_id": f"example-{uuid.uuid4().hex[:8]}-a"}
    thread_b = {"thread_id": f"example-{uuid.uuid4().hex[:8]}-b"}
    seen_a = [counter(thread_a) for _ in range(3)]
    seen_b = [counter(thread_b)]
    print("thread A counter:", seen_a, "thread B counter:", seen_b)
    assert seen_a == ["1", "2", "3"] and seen_b == ["1"], "each thread keeps its own session"

    retried = {**thread_a, "step_key": str(uuid.uuid4())}
    first, again = counter(retried), counter(retried)
    print("same step retried:", first, again)
    assert first == again == "4", "a retried step does not run the tool twice"

    print("echo:", echo(thread_a, message="hello from Python"))
    try:
        client.call_tool("demo", "fail", thread_id=thread_a["thread_id"])
    except ToolFailed as failure:
        print("tool failure surfaced as ToolFailed:", failure)
    try:
        client.call_tool("demo", "sleep", {"ms": 2000}, thread_id=thread_a["thread_id"], timeout_ms=100)
    except McpwatchError as error:
        print(f"deadline: {error.kind} (status {error.status}, retryable: {error.retryable})")
        assert error.kind == "timeout"

    closed = client.end_thread(thread_a["thread_id"]) + client.end_thread(thread_b["thread_id"])
    print("closed sessions:", closed)
    assert counter(thread_a) == "1", "an ended thread starts over"
    client.end_thread(thread_a["thread_id"])
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
