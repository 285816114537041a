"""A LangGraph checkpointer whose thread delete also ends the thread's mcpwatch sessions
(extra ``[langgraph]``).

LangGraph has no "thread ended" event; deleting a thread's checkpoints is the closest
thing. Wrap the checkpointer the graph already uses::

    saver = ScopeClosingCheckpointer(PostgresSaver(...), Client())
    graph = builder.compile(checkpointer=saver)
    ...
    saver.delete_thread("conv-42")   # checkpoints gone, and DELETE /v1/scopes/conv-42

Everything else is passed to the wrapped saver unchanged.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from ._async_client import AsyncClient
from ._client import Client
from ._errors import McpwatchError

if TYPE_CHECKING:  # langgraph-checkpoint >= 4.3; older savers never get these calls
    from langgraph.checkpoint.base import DeltaChannelHistory

__all__ = ["ScopeClosingCheckpointer"]

V = TypeVar("V", int, float, str)

_log = logging.getLogger(__name__)


class ScopeClosingCheckpointer(BaseCheckpointSaver[V]):
    """Wraps ``saver``; ``delete_thread`` / ``adelete_thread`` also call
    ``client.end_thread(thread_id, namespace)``.

    ``client`` may be a ``Client`` (both deletes work; the async one runs it in a
    thread) or an ``AsyncClient`` (only ``adelete_thread``). Use the ``namespace`` the
    tools use. When the agent cannot be reached the checkpoints are still deleted and
    a warning is logged: the sessions then end at the agent's idle TTL.
    """

    def __init__(
        self,
        saver: BaseCheckpointSaver[V],
        client: Client | AsyncClient,
        *,
        namespace: str | None = None,
    ) -> None:
        super().__init__()
        self.saver: BaseCheckpointSaver[V] = saver
        self.serde = saver.serde
        self.client = client
        self.namespace = namespace

    # The thread's end: the checkpoints, then the sessions.

    def delete_thread(self, thread_id: str) -> None:
        """Deletes the thread's checkpoints, then closes its scope at the agent."""
        if not isinstance(self.client, Client):
            raise TypeError(
                "delete_thread needs a sync Client; with an AsyncClient use adelete_thread"
            )
        self.saver.delete_thread(thread_id)
        try:
            self.client.end_thread(thread_id, self.namespace)
        except McpwatchError as error:
            _log.warning(
                "checkpoints of thread %r deleted, its scope not closed: %s", thread_id, error
            )

    async def adelete_thread(self, thread_id: str) -> None:
        """Deletes the thread's checkpoints, then closes its scope at the agent."""
        await self.saver.adelete_thread(thread_id)
        try:
            if isinstance(self.client, AsyncClient):
                await self.client.end_thread(thread_id, self.namespace)
            else:
                await asyncio.to_thread(self.client.end_thread, thread_id, self.namespace)
        except McpwatchError as error:
            _log.warning(
                "checkpoints of thread %r deleted, its scope not closed: %s", thread_id, error
            )

    # Everything else is the wrapped saver's.

    @property
    def config_specs(self) -> builtins.list[Any]:
        return self.saver.config_specs

    def with_allowlist(
        self, extra_allowlist: Collection[tuple[str, ...]]
    ) -> BaseCheckpointSaver[V]:
        saver = self.saver.with_allowlist(extra_allowlist)
        if saver is self.saver:
            return self
        return ScopeClosingCheckpointer(saver, self.client, namespace=self.namespace)

    def get(self, config: RunnableConfig) -> Checkpoint | None:
        return self.saver.get(config)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.saver.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.saver.list(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.saver.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.saver.put_writes(config, writes, task_id, task_path)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.saver.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.saver.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.saver.prune(thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self.saver.get_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current: V | None, channel: None) -> V:
        return self.saver.get_next_version(current, channel)

    async def aget(self, config: RunnableConfig) -> Checkpoint | None:
        return await self.saver.aget(config)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.saver.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.saver.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self.saver.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.saver.aput_writes(config, writes, task_id, task_path)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.saver.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.saver.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.saver.aprune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.saver.aget_delta_channel_history(config=config, channels=channels)
