"""The `everything` scenario of py2_client.py: every tool, resource, template and prompt of
@modelcontextprotocol/server-everything through the mcp 2.x `Client`, with the
server-to-client traffic it can be made to send.

Result keys (one JSON object, built here):
  tools_listed          names from tools/list
  tools                 {name: {"content": [block types], "is_error": bool} | {"skipped": why}}
  resources             {"listed": n, "read": n}       every listed resource read
  resource_templates    {"listed": n, "read": n}       every template read with its variables = 1
  prompts               {name: {"messages": n}}        every prompt got
  completions           {"department": [values], "resourceId": [values]}
  progress              [[progress, total], ...]        from trigger-long-running-operation
  sampling_requests, elicitation_requests, roots_requests, log_messages   counts
  notifications         {method: count} of every notification the client saw
  list_changed          {"tools": bool, "resources": bool, "prompts": bool}
  resource_updated      bool: notifications/resources/updated for the subscribed URI
  session_resource_read bool: the resource gzip-file-as-resource registered was readable
  legacy_only_skipped   list: the checks skipped on a 2026-07-28 connection (no sessions there)
  failures              list of what did not hold; empty on success
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import common
import mcp_types as types
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# The arguments each known tool is called with; a tool not named here gets its required
# fields filled from its input schema (common.canned_value).
TOOL_ARGUMENTS: dict[str, dict[str, Any]] = {
    "echo": {"message": "hello everything"},
    "get-annotated-message": {"messageType": "success", "includeImage": True},
    "get-resource-links": {"count": 2},
    "get-resource-reference": {"resourceType": "Text", "resourceId": 1},
    "get-structured-content": {"location": "Chicago"},
    "get-sum": {"a": 2, "b": 3},
    # A data: URI, so the server fetches nothing from the network.
    "gzip-file-as-resource": {
        "name": "gateway-test.txt.gz",
        "data": "data:text/plain;base64,aGVsbG8gZ2F0ZXdheQ==",
        "outputType": "resourceLink",
    },
    "trigger-long-running-operation": {"duration": 1.5, "steps": 3},
    "trigger-url-elicitation": {"url": "https://example.com/gateway-consent"},
    "trigger-sampling-request": {"prompt": "say hello", "maxTokens": 10},
}
# Text each answer must contain: proof the canned sampling/elicitation/roots answers made the
# round trip through the server (and through whatever sits between).
EXPECTED_TEXT: dict[str, str] = {
    "echo": "hello everything",
    "get-sum": "is 5",
    "trigger-sampling-request": "canned sampling answer",
    "trigger-elicitation-request": "canned name",
    "trigger-url-elicitation": '"action": "accept"',
    "get-roots-list": "file:///tmp/canned-root",
}
# Answers that need a server-to-client request, which 2026-07-28 has no session for.
LEGACY_ONLY_TEXT = (
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
    "get-roots-list",
)
# Called first and last (on, then off): they start the periodic log and resource-update traffic.
TOGGLES = ("toggle-simulated-logging", "toggle-subscriber-updates")
SUBSCRIBED_URI = "demo://resource/dynamic/text/1"
PROMPT_ARGUMENTS: dict[str, dict[str, str]] = {
    "args-prompt": {"city": "Paris", "state": "Texas"},
    "resource-prompt": {"resourceType": "Text", "resourceId": "1"},
}
# How long to wait, at most, for the notifications the server sends on its own schedule.
NOTIFICATION_WAIT_S = 8.0
PAGE_LIMIT = 50


@dataclass
class Observed:
    """What the server sent to the client, filled by the client's callbacks."""

    sampling_requests: int = 0
    elicitation_requests: int = 0
    roots_requests: int = 0
    log_messages: int = 0
    progress: list[list[float | None]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)


def tool_arguments(tool: types.Tool) -> dict[str, Any]:
    if tool.name in TOOL_ARGUMENTS:
        return TOOL_ARGUMENTS[tool.name]
    schema = tool.input_schema or {}
    properties = schema.get("properties", {})
    return {
        name: common.canned_value(name, properties.get(name, {}))
        for name in schema.get("required", [])
    }


def task_required(tool: types.Tool) -> bool:
    execution = getattr(tool, "execution", None)
    return getattr(execution, "task_support", None) == "required"


async def all_pages(fetch: Any, items: str) -> list[Any]:
    """Every item of a paginated list, at most PAGE_LIMIT pages."""
    found: list[Any] = []
    cursor = None
    for _ in range(PAGE_LIMIT):
        page = await fetch(cursor=cursor)
        found.extend(getattr(page, items))
        cursor = page.next_cursor
        if not cursor:
            return found
    raise common.ScenarioFailed(f"{items}: more than {PAGE_LIMIT} pages")


class Everything:
    """One run of the scenario against one connected client."""

    def __init__(
        self, client: Client, observed: Observed, progress_callback: Any, mode: str
    ) -> None:
        self.client = client
        self.observed = observed
        self.progress_callback = progress_callback
        self.legacy = client.protocol_version not in MODERN_PROTOCOL_VERSIONS
        self.failures: list[str] = []
        self.result: dict[str, Any] = {
            "tools": {},
            "prompts": {},
            "completions": {},
            "legacy_only_skipped": [],
        }

    def check(self, holds: bool, what: str) -> None:
        if not holds:
            self.failures.append(what)

    async def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult | None:
        try:
            outcome = await self.client.call_tool(
                name, arguments, progress_callback=self.progress_callback
            )
        except Exception as error:
            self.failures.append(f"tool {name}: {common.describe(error)}")
            self.result["tools"][name] = {"error": common.describe(error)}
            return None
        self.result["tools"][name] = {
            "content": [block.type for block in outcome.content],
            "is_error": bool(outcome.is_error),
        }
        self.check(not outcome.is_error, f"tool {name} returned isError: {outcome.content!r}"[:300])
        self.check_text(name, outcome)
        return outcome

    def check_text(self, name: str, outcome: types.CallToolResult) -> None:
        expected = EXPECTED_TEXT.get(name)
        if expected is None or (name in LEGACY_ONLY_TEXT and not self.legacy):
            return
        text = "\n".join(getattr(block, "text", "") for block in outcome.content)
        self.check(expected in text, f"tool {name}: answer lacks {expected!r}: {text[:200]!r}")

    async def tools(self) -> None:
        listed = await all_pages(self.client.list_tools, "tools")
        self.result["tools_listed"] = sorted(tool.name for tool in listed)
        for tool in listed:
            if tool.name in TOGGLES:
                continue
            if task_required(tool):
                self.result["tools"][tool.name] = {
                    "skipped": "taskSupport required: the mcp 2.x Client has no tasks"
                }
                continue
            outcome = await self.call(tool.name, tool_arguments(tool))
            if outcome is not None and tool.name == "gzip-file-as-resource":
                await self.read_session_resource(outcome)
        sum_result = self.result["tools"].get("get-sum")
        self.check(sum_result is not None, "get-sum was not listed")

    async def read_session_resource(self, outcome: types.CallToolResult) -> None:
        links = [block.uri for block in outcome.content if block.type == "resource_link"]
        read = False
        if links:
            contents = (await self.client.read_resource(str(links[0]))).contents
            read = bool(contents)
        self.result["session_resource_read"] = read
        self.check(read, "the resource gzip-file-as-resource registered could not be read")

    async def toggles(self) -> None:
        """Subscribe and turn on the periodic log and resource-update traffic (legacy only)."""
        if not self.legacy:
            self.result["legacy_only_skipped"] += [
                "logging/setLevel",
                "resources/subscribe",
                *TOGGLES,
            ]
            return
        await self.client.set_logging_level("debug")
        await self.client.subscribe_resource(SUBSCRIBED_URI)
        for name in TOGGLES:
            await self.call(name, {})

    async def toggles_off(self) -> None:
        if not self.legacy:
            return
        for name in TOGGLES:
            await self.client.call_tool(name, {})
        await self.client.unsubscribe_resource(SUBSCRIBED_URI)

    async def resources(self) -> None:
        listed = await all_pages(self.client.list_resources, "resources")
        read = 0
        for resource in listed:
            contents = (await self.client.read_resource(str(resource.uri))).contents
            self.check(bool(contents), f"resource {resource.uri} read empty")
            read += bool(contents)
        self.result["resources"] = {"listed": len(listed), "read": read}
        self.check(len(listed) > 0, "no resources listed")
        templates = await all_pages(self.client.list_resource_templates, "resource_templates")
        template_reads = 0
        for template in templates:
            uri = re.sub(r"\{[^}]+\}", "1", template.uri_template)
            contents = (await self.client.read_resource(uri)).contents
            self.check(bool(contents), f"template {template.uri_template} read {uri} empty")
            template_reads += bool(contents)
        self.result["resource_templates"] = {"listed": len(templates), "read": template_reads}

    async def prompts(self) -> None:
        listed = await all_pages(self.client.list_prompts, "prompts")
        for prompt in listed:
            arguments = PROMPT_ARGUMENTS.get(prompt.name)
            if arguments is None:
                arguments = await self.completed_arguments(prompt)
            got = await self.client.get_prompt(prompt.name, arguments)
            self.result["prompts"][prompt.name] = {"messages": len(got.messages)}
            self.check(len(got.messages) > 0, f"prompt {prompt.name} has no messages")
        self.check(len(listed) > 0, "no prompts listed")

    async def completed_arguments(self, prompt: types.Prompt) -> dict[str, str]:
        """Fill a prompt's arguments in order, each completed given the ones before."""
        filled: dict[str, str] = {}
        for argument in prompt.arguments or []:
            ref = types.PromptReference(type="ref/prompt", name=prompt.name)
            values = (
                await self.client.complete(
                    ref, {"name": argument.name, "value": ""}, filled or None
                )
            ).completion.values
            self.result["completions"][argument.name] = values
            filled[argument.name] = values[0] if values else f"canned {argument.name}"
        return filled

    async def template_completion(self) -> None:
        ref = types.ResourceTemplateReference(
            type="ref/resource", uri="demo://resource/dynamic/text/{resourceId}"
        )
        completed = await self.client.complete(ref, {"name": "resourceId", "value": "1"})
        self.result["completions"]["resourceId"] = completed.completion.values

    async def wait_for_notifications(self) -> None:
        """Wait, bounded, for the periodic log message and resource update (sent every 5 s)."""
        if not self.legacy:
            return
        deadline = time.monotonic() + NOTIFICATION_WAIT_S
        while time.monotonic() < deadline:
            seen = Counter(self.observed.notifications)
            if self.observed.log_messages and seen["notifications/resources/updated"]:
                return
            await anyio.sleep(0.1)

    def summarize(self) -> dict[str, Any]:
        observed = self.observed
        seen = Counter(observed.notifications)
        self.result.update(
            progress=observed.progress,
            sampling_requests=observed.sampling_requests,
            elicitation_requests=observed.elicitation_requests,
            roots_requests=observed.roots_requests,
            log_messages=observed.log_messages,
            notifications=dict(seen),
            list_changed={
                kind: seen[f"notifications/{kind}/list_changed"] > 0
                for kind in ("tools", "resources", "prompts")
            },
            resource_updated=seen["notifications/resources/updated"] > 0,
        )
        self.check(
            len(observed.progress) > 0,
            "no progress notification from trigger-long-running-operation",
        )
        if self.legacy:
            self.check(observed.sampling_requests > 0, "no sampling request reached the client")
            self.check(
                observed.elicitation_requests > 0, "no elicitation request reached the client"
            )
            self.check(observed.log_messages > 0, "no log message reached the client")
            self.check(
                self.result["resource_updated"], f"no resources/updated for {SUBSCRIBED_URI}"
            )
        else:
            self.result["legacy_only_skipped"] += [
                "sampling",
                "elicitation",
                "roots",
                "log messages",
            ]
        self.result["failures"] = self.failures
        return self.result


async def run_everything(
    client: Client, observed: Observed, progress_callback: Any, mode: str
) -> dict[str, Any]:
    """Run the scenario; returns the result object (its `failures` list says what did not hold)."""
    run = Everything(client, observed, progress_callback, mode)
    await run.toggles()
    await run.tools()
    await run.resources()
    await run.prompts()
    await run.template_completion()
    await run.wait_for_notifications()
    await run.toggles_off()
    return run.summarize()
