"""Transport retries through a proxy that loses the agent's answer after the tool ran."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from conftest import stats
from dropping_proxy import DroppingProxy

from mcpwatch_client import AgentUnreachable, AsyncClient, Client
from mcpwatch_client._retry import backoff_s, should_retry
from mcpwatch_client.testing import AgentProcess


@pytest.fixture
def proxy(mcpwatch_agent: AgentProcess) -> Iterator[DroppingProxy]:
    with DroppingProxy(mcpwatch_agent.api) as proxy:
        yield proxy


def test_with_a_key_a_lost_answer_is_retried_and_the_tool_runs_once(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    with Client(proxy.url) as through_proxy:
        proxy.drop_answers(1)
        result = through_proxy.call_tool(
            "demo", "counter", scope=thread_id, idempotency_key=f"k-{thread_id}"
        )
    assert proxy.dropped == 1
    assert result.text == "1", "the retry got the first call's answer"
    assert stats(client, thread_id) == {"calls": 1, "cancelled": 0, "counter": 1}
    client.close_scope(thread_id)


def test_async_with_a_key_a_lost_answer_is_retried(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    async def main() -> str:
        async with AsyncClient(proxy.url) as through_proxy:
            proxy.drop_answers(1)
            result = await through_proxy.call_tool(
                "demo", "counter", scope=thread_id, idempotency_key=f"k-{thread_id}"
            )
            return result.text

    assert asyncio.run(main()) == "1"
    assert proxy.dropped == 1
    assert stats(client, thread_id)["calls"] == 1
    client.close_scope(thread_id)


def test_without_a_key_a_lost_answer_is_not_retried(
    proxy: DroppingProxy, client: Client, thread_id: str
) -> None:
    with Client(proxy.url) as through_proxy:
        proxy.drop_answers(1)
        with pytest.raises(AgentUnreachable) as error:
            through_proxy.call_tool("demo", "counter", scope=thread_id)
    assert not error.value.not_processed, "the call may have run"
    assert isinstance(error.value.__cause__, httpx.RemoteProtocolError)
    assert stats(client, thread_id)["calls"] == 1, "it ran, once"
    client.close_scope(thread_id)


def test_retries_are_bounded(proxy: DroppingProxy, thread_id: str) -> None:
    with Client(proxy.url, retries=2) as through_proxy:
        proxy.drop_answers(10)
        with pytest.raises(AgentUnreachable):
            through_proxy.call_tool("demo", "echo", {"message": "x"}, idempotency_key="bounded")
    assert proxy.dropped == 3, "the first attempt and two retries"


def test_the_retry_rule() -> None:
    connect = httpx.ConnectError("refused")
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    read_timeout = httpx.ReadTimeout("slow")
    assert should_retry(connect, retry_safe=False, attempt=0, retries=2)
    assert not should_retry(dropped, retry_safe=False, attempt=0, retries=2)
    assert not should_retry(read_timeout, retry_safe=False, attempt=0, retries=2)
    assert should_retry(dropped, retry_safe=True, attempt=1, retries=2)
    assert should_retry(read_timeout, retry_safe=True, attempt=0, retries=2)
    assert not should_retry(connect, retry_safe=True, attempt=2, retries=2)
    assert [backoff_s(n) for n in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
