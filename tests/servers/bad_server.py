#!/usr/bin/env python3
"""A deliberately misbehaving MCP server for mcpwatch's integration tests.

Needs the PyPI package ``mcp==2.3.0`` (installed into .test-deps/venv by
scripts/install-test-deps.sh). In mcp 2.x FastMCP is called MCPServer.

Usage:
    bad_server.py stdio
    bad_server.py http --port N [--idle-timeout S] [--max-sessions N] [--stateless] [--json]
        streamable HTTP at http://127.0.0.1:N/mcp
    bad_server.py sse --port N
        legacy HTTP+SSE at http://127.0.0.1:N/sse (POST /messages/?session_id=...)

``--port 0`` picks a free port; the chosen port is printed on stderr as
``bad_server: listening on http://127.0.0.1:PORT/...`` and logged as
``listening MODE PORT``.

Environment knobs:
    BAD_LOG=path            append one line per event, flushed at once:
                              start MODE PID | grandchild PID | listening MODE PORT |
                              slow CANCELLED | hang CANCELLED | crash N | record TAG
    BAD_IGNORE_EOF=1        stdio: keep running after stdin reaches EOF
    BAD_IGNORE_TERM=1       ignore SIGTERM
    BAD_STARTUP_DELAY=secs  sleep before serving
    BAD_SPAWN_GRANDCHILD=1  at start, spawn `sleep 300` in our process group
                            (stdio of the grandchild is /dev/null)
    BAD_CRASH_ON=initialize stdio: exit 5 on reading the first message (the
                            initialize request), before answering; http: exit 5
                            on the initialize POST
    BAD_CRASH_ON=close      stdio: die by SIGSEGV once stdin reaches EOF (the
                            client's close); http: exit 6 on the session DELETE

`bad_server.py stdio ARG...` accepts extra arguments and ignores them (the
`argv` tool shows them: tests prove they arrive without a shell).

stdout carries only the protocol in stdio mode (except for the garbage_stdout
tool); diagnostics go to stderr and to BAD_LOG.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import anyio
from mcp.server.mcpserver import Context, MCPServer

MODE = "?"
_WIRE_STDOUT: int | None = None  # dup of the original stdout (stdio mode)


def log_event(line: str) -> None:
    """Record an event on stderr and, if BAD_LOG is set, append it to that file.

    One O_APPEND write per line, so lines from several processes never interleave
    and nothing is lost on os._exit.
    """
    sys.stderr.write(f"bad_server[{os.getpid()}]: {line}\n")
    sys.stderr.flush()
    path = os.environ.get("BAD_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


mcp = MCPServer("bad-server", version="0.1.0")

# counter state: one integer per MCP session
_counters: dict[object, int] = {}


def _session_key(ctx: Context) -> object:
    """Key for per-session state.

    Streamable HTTP (stateful): the Mcp-Session-Id header. Otherwise the
    connection object behind the session (mcp 2.x's `ctx.session` is a
    per-request proxy, so it can't be the key): stdio has one per process,
    SSE one per GET /sse stream, stateless HTTP one per request. The dict keeps
    the object alive, so its identity can't be reused by a later session.
    """
    headers = ctx.headers
    if headers is not None:
        sid = headers.get("mcp-session-id")
        if sid:
            return ("http", sid)
    conn = getattr(ctx.session, "_connection", None)
    return conn if conn is not None else "process"


@mcp.tool()
async def echo(message: str) -> str:
    """Return the message unchanged."""
    return message


@mcp.tool()
async def counter(ctx: Context) -> int:
    """Return 1, 2, 3, ... counting calls within this MCP session."""
    key = _session_key(ctx)
    _counters[key] = _counters.get(key, 0) + 1
    return _counters[key]


@mcp.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep for `seconds`, reporting progress every 0.5 s; returns "done"."""
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            await anyio.sleep(min(0.5, seconds - elapsed))
            await ctx.report_progress(min(time.monotonic() - start, seconds), seconds)
    except anyio.get_cancelled_exc_class():
        log_event("slow CANCELLED")
        raise
    return "done"


@mcp.tool()
async def hang() -> str:
    """Never return (until cancelled)."""
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        log_event("hang CANCELLED")
        raise
    return "unreachable"


@mcp.tool()
async def fail() -> str:
    """Raise, so the call result has isError: true."""
    raise RuntimeError("fail: this tool always fails")


@mcp.tool()
async def crash(code: int = 3) -> str:
    """Exit the whole server process immediately with `code`."""
    log_event(f"crash {code}")
    os._exit(code)


@mcp.tool()
async def record(tag: str) -> str:
    """Log `record TAG` (proof that the tool ran) and return the tag."""
    log_event(f"record {tag}")
    return tag


@mcp.tool()
async def garbage_stdout() -> str:
    """Write a non-JSON line straight to the process stdout, then return "ok"."""
    # mcp 2.x points fd 1 at stderr while serving stdio and writes the protocol
    # to a private duplicate; _WIRE_STDOUT is our own duplicate of the original
    # fd 1, taken before serving, so this really lands on the client's pipe.
    os.write(_WIRE_STDOUT if _WIRE_STDOUT is not None else 1, b"this is not json-rpc {garbage\n")
    return "ok"


@mcp.tool()
async def partial_exit() -> str:
    """Write half a JSON-RPC message (no newline) on the protocol stdout, then exit 0."""
    os.write(_WIRE_STDOUT if _WIRE_STDOUT is not None else 1, b'{"jsonrpc": "2.0", "id": 2, "result": {"con')
    log_event("partial_exit")
    os._exit(0)


@mcp.tool()
async def big(size: int) -> str:
    """Return a string of exactly `size` bytes."""
    return "x" * max(size, 0)


@mcp.tool()
async def argv() -> str:
    """Return sys.argv as a JSON list."""
    import json

    return json.dumps(sys.argv)


@mcp.tool()
async def environ() -> str:
    """Return the process environment as a JSON object."""
    import json

    return json.dumps(dict(os.environ))


@mcp.tool()
async def block_event_loop(seconds: float) -> str:
    """Block the server's event loop with a synchronous sleep."""
    time.sleep(seconds)
    return "unblocked"


# ---------------------------------------------------------------------------


def _serve_uvicorn(app, port: int, mode: str, path: str) -> None:
    import uvicorn

    ignore_term = env_flag("BAD_IGNORE_TERM")

    class Server(uvicorn.Server):
        # uvicorn installs its own SIGTERM handler; honour BAD_IGNORE_TERM here.
        def handle_exit(self, sig, frame):  # type: ignore[override]
            if ignore_term and sig == signal.SIGTERM:
                sys.stderr.write("bad_server: ignoring SIGTERM\n")
                return
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):  # type: ignore[override]
            await super().startup(sockets=sockets)
            for srv in self.servers:
                for sock in srv.sockets:
                    real_port = sock.getsockname()[1]
                    sys.stderr.write(f"bad_server: listening on http://127.0.0.1:{real_port}{path}\n")
                    sys.stderr.flush()
                    log_event(f"listening {mode} {real_port}")
                    return

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    Server(config).run()


def _crash_on_http(app):
    """ASGI wrapper: exit the process on the initialize POST or the DELETE (BAD_CRASH_ON)."""
    when = os.environ.get("BAD_CRASH_ON", "")

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if when == "close" and scope["method"] == "DELETE":
            log_event("crash close")
            os._exit(6)
        if when == "initialize" and scope["method"] == "POST":
            chunks = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            if b'"initialize"' in body:
                log_event("crash initialize")
                os._exit(5)
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            return await app(scope, replay, send)
        return await app(scope, receive, send)

    return wrapped


def _crash_on_initialize_stdio() -> None:
    """Read the first protocol line (the initialize request), then exit 5 unanswered."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            break
        line += chunk
    log_event("crash initialize")
    os._exit(5)


def main() -> None:
    global MODE, _WIRE_STDOUT
    parser = argparse.ArgumentParser(description="misbehaving MCP test server")
    sub = parser.add_subparsers(dest="mode", required=True)
    stdio = sub.add_parser("stdio")
    stdio.add_argument("extra", nargs="*", help="ignored (see the argv tool)")
    http = sub.add_parser("http", help="streamable HTTP at /mcp")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--idle-timeout", type=float, default=None, help="session idle timeout, seconds")
    http.add_argument("--max-sessions", type=int, default=None)
    http.add_argument("--stateless", action="store_true")
    http.add_argument("--json", action="store_true", help="JSON responses instead of SSE streams")
    sse = sub.add_parser("sse", help="legacy HTTP+SSE at /sse")
    sse.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    MODE = args.mode

    if env_flag("BAD_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    log_event(f"start {MODE} {os.getpid()}")

    if env_flag("BAD_SPAWN_GRANDCHILD"):
        child = subprocess.Popen(
            ["sleep", "300"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log_event(f"grandchild {child.pid}")

    delay = float(os.environ.get("BAD_STARTUP_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)

    crash_on = os.environ.get("BAD_CRASH_ON", "")
    if MODE == "stdio":
        if crash_on == "initialize":
            _crash_on_initialize_stdio()
        _WIRE_STDOUT = os.dup(1)  # non-inheritable, so children don't get it
        mcp.run("stdio")
        if crash_on == "close":
            log_event("crash close")
            os.kill(os.getpid(), signal.SIGSEGV)
        if env_flag("BAD_IGNORE_EOF"):
            sys.stderr.write("bad_server: stdin EOF ignored, staying alive\n")
            sys.stderr.flush()
            while True:
                time.sleep(3600)
    elif MODE == "http":
        kwargs: dict = {
            "json_response": args.json,
            "stateless_http": args.stateless,
            "host": "127.0.0.1",
        }
        if not args.stateless:
            if args.idle_timeout is not None:
                kwargs["session_idle_timeout"] = args.idle_timeout
            if args.max_sessions is not None:
                kwargs["max_sessions"] = args.max_sessions
        app = mcp.streamable_http_app(**kwargs)
        if crash_on:
            app = _crash_on_http(app)
        _serve_uvicorn(app, args.port, "http", "/mcp")
    elif MODE == "sse":
        app = mcp.sse_app(host="127.0.0.1")
        _serve_uvicorn(app, args.port, "sse", "/sse")


if __name__ == "__main__":
    main()
