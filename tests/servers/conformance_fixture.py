#!/usr/bin/env python3
"""The MCP conformance suite's server fixtures, served over streamable HTTP.

Implements what the server scenarios of @modelcontextprotocol/conformance 0.1.16 ask a
server for (the scenario texts in the installed package are the source of truth):
tools `test_simple_text` ... `test_elicitation_sep1330_enums`, `json_schema_2020_12_tool`
and `test_reconnection`; resources `test://static-text`, `test://static-binary`,
`test://watched-resource` and the template `test://template/{id}/data`; prompts `test_*`;
`completion/complete`; `logging/setLevel`; resource subscriptions.

It is written on the Python SDK's low-level `Server` (mcp 2.3.0 in .test-deps/venv), so
every schema and result goes on the wire exactly as written here. Resumable SSE streams
(an in-memory event store, a priming event with `retry`) let `test_reconnection` close its
stream mid-call, as SEP-1699 describes.

    .test-deps/venv/bin/python tests/servers/conformance_fixture.py --port 8790
        # http://127.0.0.1:8790/mcp ; --port 0 picks a free port

On start it prints `conformance_fixture: listening on http://127.0.0.1:PORT/mcp` on stderr.
Binds 127.0.0.1 only; the SDK's DNS-rebinding protection (Host and Origin checks) is on.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import struct
import sys
import warnings
import wave
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventId, EventMessage, EventStore, StreamId

# The fixture implements the handshake-era features on purpose (logging, sampling,
# elicitation, subscriptions); the SDK flags them as deprecated in 2026-07-28.
warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")

SERVER_NAME = "mcpwatch-conformance-fixture"
JSON_SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"
WATCHED_URI = "test://watched-resource"
RETRY_INTERVAL_MS = 500
LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

Context = Any  # mcp.server.context.ServerRequestContext
ToolHandler = Callable[[Context, dict[str, Any]], Awaitable[types.CallToolResult]]


# --- content -------------------------------------------------------------------


def one_pixel_png() -> str:
    """A 1x1 red PNG, base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then red
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


def short_wav() -> str:
    """10 ms of silence, 8 kHz mono 16-bit WAV, base64."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return base64.b64encode(buffer.getvalue()).decode()


PNG = one_pixel_png()
WAV = short_wav()


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


def image() -> types.ImageContent:
    return types.ImageContent(type="image", data=PNG, mime_type="image/png")


def embedded_text(uri: str, mime_type: str, value: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(
        type="resource",
        resource=types.TextResourceContents(uri=uri, mime_type=mime_type, text=value),
    )


def result(*content: Any, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), is_error=is_error)


# --- per-session state (keyed by Mcp-Session-Id) ----------------------------------


class Sessions:
    """What a downstream session set: its log level and its subscriptions."""

    def __init__(self) -> None:
        self.log_level: dict[str | None, str] = {}
        self.subscriptions: dict[str | None, set[str]] = {}

    @staticmethod
    def key(ctx: Context) -> str | None:
        request = getattr(ctx, "request", None)
        return request.headers.get("mcp-session-id") if request is not None else None

    def logs_at(self, ctx: Context, level: str) -> bool:
        minimum = self.log_level.get(self.key(ctx), "debug")
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(minimum)


SESSIONS = Sessions()


# --- tools -------------------------------------------------------------------------


async def simple_text(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(text("This is a simple text response for testing."))


async def image_content(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(image())


async def audio_content(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(types.AudioContent(type="audio", data=WAV, mime_type="audio/wav"))


async def embedded_resource(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(
        embedded_text(
            "test://embedded-resource", "text/plain", "This is an embedded resource content."
        )
    )


async def multiple_content_types(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    data = json.dumps({"test": "data", "value": 123}, separators=(",", ":"))
    return result(
        text("Multiple content types test:"),
        image(),
        embedded_text("test://mixed-content-resource", "application/json", data),
    )


async def tool_with_logging(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    for step, message in enumerate(
        ["Tool execution started", "Tool processing data", "Tool execution completed"]
    ):
        if step:
            await anyio.sleep(0.05)
        if SESSIONS.logs_at(ctx, "info"):
            await ctx.session.send_log_message("info", message, related_request_id=ctx.request_id)
    return result(text("Tool with logging executed successfully"))


async def tool_with_progress(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    for step, progress in enumerate([0, 50, 100]):
        if step:
            await anyio.sleep(0.05)
        await ctx.session.report_progress(progress, 100)
    return result(text("Tool with progress executed successfully"))


async def error_handling(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(text("This tool intentionally returns an error for testing"), is_error=True)


async def sampling(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    if not ctx.session.check_client_capability(
        types.ClientCapabilities(sampling=types.SamplingCapability())
    ):
        return result(text("The client does not support sampling"), is_error=True)
    message = types.SamplingMessage(role="user", content=text(str(args.get("prompt", ""))))
    answer = await ctx.session.create_message(
        [message], max_tokens=100, related_request_id=ctx.request_id
    )
    reply = (
        answer.content.text
        if getattr(answer.content, "type", None) == "text"
        else str(answer.content)
    )
    return result(text(f"LLM response: {reply}"))


async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> types.ElicitResult | None:
    """Ask the client, or None when it declared no elicitation capability."""
    if not ctx.session.check_client_capability(
        types.ClientCapabilities(elicitation=types.ElicitationCapability())
    ):
        return None
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}


async def elicitation(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    answer = await elicit(ctx, str(args.get("message", "")), ELICITATION_SCHEMA)
    if answer is None:
        return result(text("The client does not support elicitation"), is_error=True)
    return result(
        text(f"User response: action={answer.action}, content={json.dumps(answer.content)}")
    )


SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
}

SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Untitled single-select",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Titled single-select",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Legacy titled enum",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Untitled multi-select",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Titled multi-select",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}


def elicitation_with(schema: dict[str, Any], message: str) -> ToolHandler:
    async def handler(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
        answer = await elicit(ctx, message, schema)
        if answer is None:
            return result(text("The client does not support elicitation"), is_error=True)
        content = json.dumps(answer.content)
        return result(text(f"Elicitation completed: action={answer.action}, content={content}"))

    return handler


async def json_schema_tool(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    return result(text(f"Received: {json.dumps(args, sort_keys=True)}"))


async def reconnection(ctx: Context, args: dict[str, Any]) -> types.CallToolResult:
    """Close this call's SSE stream, then answer: the client resumes with Last-Event-ID."""
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
        await anyio.sleep(0.1)
    return result(text("Reconnection test completed successfully"))


JSON_SCHEMA_2020_12_INPUT: dict[str, Any] = {
    "$schema": JSON_SCHEMA_2020_12,
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


def string_arguments(**descriptions: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": text_} for name, text_ in descriptions.items()
        },
        "required": list(descriptions),
    }


# name -> (description, input schema, handler)
TOOLS: dict[str, tuple[str, dict[str, Any], ToolHandler]] = {
    "test_simple_text": ("Returns simple text content", EMPTY_OBJECT_SCHEMA, simple_text),
    "test_image_content": ("Returns image content", EMPTY_OBJECT_SCHEMA, image_content),
    "test_audio_content": ("Returns audio content", EMPTY_OBJECT_SCHEMA, audio_content),
    "test_embedded_resource": (
        "Returns embedded resource content",
        EMPTY_OBJECT_SCHEMA,
        embedded_resource,
    ),
    "test_multiple_content_types": (
        "Returns text, image and resource content",
        EMPTY_OBJECT_SCHEMA,
        multiple_content_types,
    ),
    "test_tool_with_logging": (
        "Sends three log messages while it runs",
        EMPTY_OBJECT_SCHEMA,
        tool_with_logging,
    ),
    "test_tool_with_progress": (
        "Reports progress 0, 50, 100 of 100",
        EMPTY_OBJECT_SCHEMA,
        tool_with_progress,
    ),
    "test_error_handling": ("Always returns an error result", EMPTY_OBJECT_SCHEMA, error_handling),
    "test_sampling": (
        "Asks the client's LLM (sampling/createMessage)",
        string_arguments(prompt="The prompt to send to the LLM"),
        sampling,
    ),
    "test_elicitation": (
        "Asks the user for input (elicitation/create)",
        string_arguments(message="The message to show the user"),
        elicitation,
    ),
    "test_elicitation_sep1034_defaults": (
        "Elicitation with defaults for every primitive type (SEP-1034)",
        EMPTY_OBJECT_SCHEMA,
        elicitation_with(SEP1034_SCHEMA, "Please review and update the form fields"),
    ),
    "test_elicitation_sep1330_enums": (
        "Elicitation with the five enum schema variants (SEP-1330)",
        EMPTY_OBJECT_SCHEMA,
        elicitation_with(SEP1330_SCHEMA, "Please select options from the enums"),
    ),
    "json_schema_2020_12_tool": (
        "Tool with JSON Schema 2020-12 features",
        JSON_SCHEMA_2020_12_INPUT,
        json_schema_tool,
    ),
    "test_reconnection": (
        "Closes its SSE stream mid-call, then answers (SEP-1699)",
        EMPTY_OBJECT_SCHEMA,
        reconnection,
    ),
}


async def list_tools(ctx: Context, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(name=name, description=description, input_schema=schema)
            for name, (description, schema, _) in TOOLS.items()
        ]
    )


async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
    entry = TOOLS.get(params.name)
    if entry is None:
        return result(text(f"Unknown tool: {params.name}"), is_error=True)
    return await entry[2](ctx, dict(params.arguments or {}))


# --- resources ---------------------------------------------------------------------

STATIC_RESOURCES: dict[str, tuple[str, str, str]] = {  # uri -> (name, description, mime type)
    "test://static-text": (
        "Static Text Resource",
        "A static text resource for testing",
        "text/plain",
    ),
    "test://static-binary": (
        "Static Binary Resource",
        "A static binary resource (PNG) for testing",
        "image/png",
    ),
    WATCHED_URI: ("Watched Resource", "A resource for subscription tests", "text/plain"),
}
TEMPLATE = "test://template/{id}/data"


def read_contents(uri: str) -> types.TextResourceContents | types.BlobResourceContents | None:
    if uri == "test://static-text":
        return types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
        )
    if uri == "test://static-binary":
        return types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)
    if uri == WATCHED_URI:
        return types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="Watched resource content."
        )
    prefix, suffix = "test://template/", "/data"
    if uri.startswith(prefix) and uri.endswith(suffix) and len(uri) > len(prefix) + len(suffix):
        item = uri[len(prefix) : -len(suffix)]
        data = {"id": item, "templateTest": True, "data": f"Data for ID: {item}"}
        return types.TextResourceContents(
            uri=uri, mime_type="application/json", text=json.dumps(data, separators=(",", ":"))
        )
    return None


async def list_resources(ctx: Context, params: Any) -> types.ListResourcesResult:
    return types.ListResourcesResult(
        resources=[
            types.Resource(uri=uri, name=name, description=description, mime_type=mime_type)
            for uri, (name, description, mime_type) in STATIC_RESOURCES.items()
        ]
    )


async def list_resource_templates(ctx: Context, params: Any) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                uri_template=TEMPLATE,
                name="Template Resource",
                description="A resource template with an {id} parameter",
                mime_type="application/json",
            )
        ]
    )


async def read_resource(
    ctx: Context, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    contents = read_contents(str(params.uri))
    if contents is None:
        raise ValueError(f"Resource not found: {params.uri}")
    return types.ReadResourceResult(contents=[contents])


async def subscribe(ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SESSIONS.subscriptions.setdefault(Sessions.key(ctx), set()).add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SESSIONS.subscriptions.get(Sessions.key(ctx), set()).discard(str(params.uri))
    return types.EmptyResult()


# --- prompts, completion, logging ----------------------------------------------------

PROMPTS: dict[
    str, tuple[str, list[tuple[str, str]]]
] = {  # name -> (description, [(argument, description)])
    "test_simple_prompt": ("A simple prompt without arguments", []),
    "test_prompt_with_arguments": (
        "A prompt with two required arguments",
        [("arg1", "First test argument"), ("arg2", "Second test argument")],
    ),
    "test_prompt_with_embedded_resource": (
        "A prompt with an embedded resource",
        [("resourceUri", "URI of the resource to embed")],
    ),
    "test_prompt_with_image": ("A prompt with image content", []),
}


def user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


def prompt_messages(name: str, args: dict[str, str]) -> list[types.PromptMessage]:
    if name == "test_simple_prompt":
        return [user(text("This is a simple prompt for testing."))]
    if name == "test_prompt_with_arguments":
        arg1, arg2 = args.get("arg1", ""), args.get("arg2", "")
        return [user(text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
    if name == "test_prompt_with_embedded_resource":
        uri = args.get("resourceUri", "test://example-resource")
        return [
            user(embedded_text(uri, "text/plain", "Embedded resource content for testing.")),
            user(text("Please process the embedded resource above.")),
        ]
    return [user(image()), user(text("Please analyze the image above."))]


async def list_prompts(ctx: Context, params: Any) -> types.ListPromptsResult:
    return types.ListPromptsResult(
        prompts=[
            types.Prompt(
                name=name,
                description=description,
                arguments=[
                    types.PromptArgument(name=arg, description=arg_description, required=True)
                    for arg, arg_description in arguments
                ],
            )
            for name, (description, arguments) in PROMPTS.items()
        ]
    )


async def get_prompt(ctx: Context, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    if params.name not in PROMPTS:
        raise ValueError(f"Unknown prompt: {params.name}")
    return types.GetPromptResult(
        description=PROMPTS[params.name][0],
        messages=prompt_messages(params.name, dict(params.arguments or {})),
    )


COMPLETIONS = {
    "arg1": ["paris", "park", "party"],
    "arg2": ["world", "wide", "web"],
    "id": ["123", "456", "789"],
}


async def complete(ctx: Context, params: types.CompleteRequestParams) -> types.CompleteResult:
    candidates = COMPLETIONS.get(params.argument.name, [])
    values = [value for value in candidates if value.startswith(params.argument.value)]
    return types.CompleteResult(
        completion=types.Completion(values=values, total=len(values), has_more=False)
    )


async def set_level(ctx: Context, params: types.SetLevelRequestParams) -> types.EmptyResult:
    SESSIONS.log_level[Sessions.key(ctx)] = params.level
    return types.EmptyResult()


# --- resumable streams -------------------------------------------------------------------


class MemoryEventStore(EventStore):
    """Keeps the last `capacity` SSE events so a client can resume after Last-Event-ID."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[tuple[EventId, StreamId, Any]] = deque(maxlen=capacity)
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: Any) -> EventId:
        event_id = str(next(self._ids))
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: Callable[[EventMessage], Awaitable[None]]
    ) -> StreamId | None:
        events = list(self._events)
        start = next(
            (i for i, (event_id, _, _) in enumerate(events) if event_id == last_event_id), None
        )
        if start is None:
            return None
        stream_id = events[start][1]
        for event_id, stream, message in events[start + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


# --- serving -------------------------------------------------------------------------------


def build_server() -> Server[Any]:
    return Server(
        SERVER_NAME,
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_level,
    )


def serve(port: int) -> None:
    app = build_server().streamable_http_app(
        event_store=MemoryEventStore(), retry_interval=RETRY_INTERVAL_MS, host="127.0.0.1"
    )

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            real_port = self.servers[0].sockets[0].getsockname()[1]
            sys.stderr.write(
                f"conformance_fixture: listening on http://127.0.0.1:{real_port}/mcp\n"
            )
            sys.stderr.flush()

    Announcing(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    ).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, required=True, help="port on 127.0.0.1 (0 picks a free one)"
    )
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
