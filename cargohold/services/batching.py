"""Writes that may lag a little (audit events, pull times), batched off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from cargohold.services.storage import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Queues items and writes them with one database call every `interval` seconds (or as
    soon as `batch` items wait), and once more when the worker stops."""

    def __init__(self, storage: Storage, write: Callable[[list[T]], None], *,
                 interval: float = 0.5, batch: int = 500, name: str = "batch") -> None:
        self.storage = storage
        self.write = write
        self.interval = interval
        self.batch = batch
        self.name = name
        self._pending: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()  # held, so none is garbage-collected

    def add(self, item: T) -> None:
        self._pending.append(item)
        if len(self._pending) >= self.batch:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        items, self._pending = self._pending, []
        if not items:
            return
        try:
            await self.storage.db(self.write, items)
        except Exception:
            log.exception("could not write %d %s items", len(items), self.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.flush()
