"""Group commit for SQLite: the short write transactions of concurrent requests share one
transaction, one lock hand-over and one commit.

Why: SQLite writes one transaction at a time, and with a worker per CPU the processes take
turns on its lock (storage/sqlite_writer.py). Each turn costs far more than the
transaction's own statements: the lock hand-over, `BEGIN`/`COMMIT`, and the reload of pages
another process changed. So the writes that queue up while the lock is taken are run
together when it frees, each in a savepoint of its own (`Database.batch`): one failing unit
changes nothing and fails alone, and every caller is answered only after the shared commit.
A batch runs on the event loop when the lock is free, like a single short write did before.
When another process holds it, the batch tries again a few times on the loop, then every
millisecond for a few milliseconds (gathering the writes that arrive meanwhile), and only
then waits for it on a thread: a hop to a thread and back costs 35-95 µs of CPU on a
two-vCPU VM, more than the other process usually holds the lock (bench/PROFILE.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from cargohold.storage.database import Database, WouldBlock
from cargohold.storage.thread_batches import deliver

LOOP_ATTEMPTS = 4  # tries on the loop (the lock is held for microseconds) before a thread
TIMED_ATTEMPTS = 3  # then tries RETRY_AFTER apart, still on the loop
RETRY_AFTER = 0.001  # the event loop's timer resolution (libuv's is a millisecond)
MAX_BATCH = 64  # units per transaction: bounds the loop's time inside one batch

Unit = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(self, database: Database, executor: Executor) -> None:
        self.database = database
        self.executor = executor
        self._queue: list[Unit] = []
        self._attempts = 0
        self._scheduled = False
        self._waiting_tasks: set[asyncio.Future[Any]] = set()

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue `call` (a store method making one write transaction, run in the caller's
        context); the future gets its result or exception after the commit."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((call, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        batch = [unit for unit in batch if not unit[1].cancelled()]
        if self._queue:
            self._schedule()
        if not batch:
            return
        try:
            results = self.database.batch([call for call, _ in batch], on_loop=True)
        except WouldBlock:
            self._attempts += 1
            if self._attempts < LOOP_ATTEMPTS:
                self._queue[:0] = batch  # first in line next time round
                self._schedule()
                return
            if self._attempts < LOOP_ATTEMPTS + TIMED_ATTEMPTS:
                self._queue[:0] = batch
                self._scheduled = True  # the writes submitted meanwhile wait for the timer
                asyncio.get_running_loop().call_later(RETRY_AFTER, self._flush)
                return
            self._attempts = 0
            self._on_thread(batch)
            return
        except Exception as exc:  # the commit itself failed: nothing of the batch is stored
            _deliver(batch, [exc] * len(batch))
            return
        self._attempts = 0
        _deliver(batch, results)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _on_thread(self, batch: list[Unit]) -> None:
        """Wait for the lock on a thread (another process holds it), then run the batch."""
        loop = asyncio.get_running_loop()
        calls = [call for call, _ in batch]
        waiting = loop.run_in_executor(self.executor,
                                       lambda: self.database.batch(calls, on_loop=False))
        self._waiting_tasks.add(waiting)

        def done(finished: asyncio.Future[list[Any]]) -> None:
            self._waiting_tasks.discard(finished)
            error = finished.exception()
            _deliver(batch, [error] * len(batch) if error else finished.result())

        waiting.add_done_callback(done)


def _deliver(batch: list[Unit], results: list[Any]) -> None:
    deliver([future for _, future in batch], results)
