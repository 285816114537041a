"""The README's quickstart, run exactly as written, with a scripted chat model as ``model``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import ROOT, scopes_of
from graphs import calls
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from mcpwatch_client import Client
from mcpwatch_client.testing import AgentProcess

README = ROOT / "clients" / "python" / "README.md"


class ScriptedChatModel(GenericFakeChatModel):
    """A GenericFakeChatModel that accepts tools (and ignores them) and keeps its inputs."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def quickstart() -> tuple[str, str]:
    """The quickstart section's bash and python blocks."""
    section = README.read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    [bash] = re.findall(r"```bash\n(.*?)```", section, re.S)
    [python] = re.findall(r"```python\n(.*?)```", section, re.S)
    return bash, python


def test_the_quickstart_is_under_15_lines() -> None:
    bash, python = quickstart()
    assert bash.strip() == 'pip install "./clients/python[langchain]" langchain'
    lines = [line for line in (bash + python).splitlines() if line.strip()]
    assert len(lines) < 15, lines


def test_the_quickstart_runs_as_written(
    mcpwatch_agent: AgentProcess, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, python = quickstart()
    model = ScriptedChatModel(
        messages=iter(
            [calls("counter"), calls("counter", ids=["call-2"]), AIMessage("Counted to two.")]
        )
    )
    monkeypatch.setenv("MCPWATCH_AGENT", mcpwatch_agent.api)
    exec(compile(python, str(README), "exec"), {"model": model})

    last_input = model.seen[-1]
    answers = [m.content for m in last_input if isinstance(m, ToolMessage)]
    assert answers == ["1", "2"], "both calls ran in conv-42's session"
    assert "conv-42" not in scopes_of(client), "end_thread closed it"
