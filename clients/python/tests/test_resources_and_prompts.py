"""Resources and prompts, sync and async, through the agent to server-everything (npm,
installed by scripts/install-test-deps.sh)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from conftest import ROOT

from mcpwatch_client import InvalidRequest
from mcpwatch_client.testing import AgentProcess

EVERYTHING_JS = (
    ROOT / ".test-deps/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)


@pytest.fixture
def everything_agent(start_mcpwatch_agent: Callable[..., AgentProcess]) -> AgentProcess:
    assert EVERYTHING_JS.is_file(), f"{EVERYTHING_JS} is missing: run scripts/install-test-deps.sh"
    return start_mcpwatch_agent(
        '[servers.demo]\ntransport = "builtin"\n'
        '[servers.everything]\ntransport = "stdio"\ncommand = "node"\n'
        f'args = ["{EVERYTHING_JS}", "stdio"]\n'
    )


def test_resources_and_prompts_sync(everything_agent: AgentProcess) -> None:
    with everything_agent.client() as client:
        listing = client.list_resources("everything", scope="res-a")
        uris = {resource["uri"] for resource in listing["resources"]}
        assert "demo://resource/static/document/architecture.md" in uris
        templates = {t["uriTemplate"] for t in listing["resource_templates"]}
        assert "demo://resource/dynamic/text/{resourceId}" in templates
        uri = "demo://resource/dynamic/text/1"
        read = client.read_resource("everything", uri, scope="res-a")
        assert read["contents"][0]["uri"] == uri
        prompts = {prompt["name"] for prompt in client.list_prompts("everything")}
        assert "args-prompt" in prompts
        prompt = client.get_prompt("everything", "args-prompt", {"city": "Paris"}, scope="res-a")
        assert "Paris" in str(prompt["messages"])
        with pytest.raises(InvalidRequest):
            client.get_prompt("everything", "no-such-prompt")
        assert client.list_resources("demo") == {"resources": [], "resource_templates": []}
        assert client.list_prompts("demo") == []
        assert client.close_scope("res-a") == 1


def test_resources_and_prompts_async(everything_agent: AgentProcess) -> None:
    async def main() -> None:
        async with everything_agent.async_client() as client:
            listing = await client.list_resources("everything", scope="res-b")
            assert listing["resources"]
            uri = "demo://resource/dynamic/text/2"
            read = await client.read_resource("everything", uri, scope="res-b")
            assert read["contents"][0]["uri"] == uri
            assert "args-prompt" in {p["name"] for p in await client.list_prompts("everything")}
            prompt = await client.get_prompt("everything", "args-prompt", {"city": "Oslo"})
            assert "Oslo" in str(prompt["messages"])
            assert await client.close_scope("res-b") == 1

    asyncio.run(main())
