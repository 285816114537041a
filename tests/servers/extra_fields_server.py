"""A stdio MCP server, written without an SDK, whose answers carry fields no SDK
knows: the gateway must pass results, errors and ``_meta`` through unchanged.

Stdlib only. One JSON-RPC message per line on stdin/stdout (MCP stdio):

* ``initialize``: a 2025-11-25 answer with a tool capability;
* ``tools/list``: one tool, ``vendor_tool``, with an extra field on the tool;
* ``tools/call``: ``RESULT`` below, extra fields and ``_meta`` included;
* ``resources/read``: contents with an extra field;
* anything else: a JSON-RPC error with code -32042 and a ``data`` object.
"""

import json
import sys

RESULT = {
    "content": [{"type": "text", "text": "hi", "vendorAnnotation": {"x": 1}}],
    "isError": False,
    "vendorField": {"kept": True, "list": [1, 2.5, "three"]},
    "_meta": {"vendor.example/trace": "abc", "progressToken": "not-ours"},
}
TOOLS = {
    "tools": [
        {
            "name": "vendor_tool",
            "inputSchema": {"type": "object"},
            "vendorHint": "extra",
        }
    ],
    "nextCursor": None,
    "vendorListField": 7,
}
READ = {"contents": [{"uri": "vendor://a", "text": "a", "vendorBlob": [1]}], "vendorTop": True}
ERROR = {"code": -32042, "message": "vendor failure", "data": {"vendorCode": "E42", "retry": False}}


def answer(message: dict) -> dict | None:
    if "id" not in message:
        return None
    method = message.get("method")
    reply: dict = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        reply["result"] = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}, "resources": {}},
            "serverInfo": {"name": "extra-fields", "version": "1"},
        }
    elif method == "tools/list":
        reply["result"] = TOOLS
    elif method == "tools/call":
        reply["result"] = RESULT
    elif method == "resources/read":
        reply["result"] = READ
    elif method == "ping":
        reply["result"] = {}
    else:
        reply["error"] = ERROR
    return reply


def main() -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
