#!/usr/bin/env python3
"""fastmcp's proxy in front of one MCP server, served over streamable HTTP at /mcp.

    .bench-deps/fastmcp/bin/python benches/fastmcp_proxy.py --port P --url http://127.0.0.1:D/mcp
    .bench-deps/fastmcp/bin/python benches/fastmcp_proxy.py --port P -- node everything.js stdio

With `--url`, fastmcp's own streamable-HTTP client reaches the upstream; with a command
after `--`, its own stdio transport runs it. `create_proxy` with its defaults in both
cases (scripts/bench.sh, section `peers`).
"""

from __future__ import annotations

import argparse

from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url", help="the upstream's streamable-HTTP endpoint")
    parser.add_argument("command", nargs="*", help="the upstream's stdio command (after --)")
    args = parser.parse_args()
    if bool(args.url) == bool(args.command):
        parser.error("give --url or a command after --, not both")
    target = args.url or StdioTransport(command=args.command[0], args=args.command[1:])
    create_proxy(target).run(transport="http", host="127.0.0.1", port=args.port, show_banner=False)


if __name__ == "__main__":
    main()
