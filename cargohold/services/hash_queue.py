"""A large body's digest, computed on a thread that runs alongside the event loop.

The loop receives a body and hands its pieces over in batches; one hashing thread at a time
hashes the queued batches in order (OpenSSL's update releases the GIL), and the loop waits
only when it is more than AHEAD bytes in front. With a single batch in flight, as before,
the loop and the hashing thread took turns: the loop waited for the previous batch's hash
before handing over the next one, and then the thread waited for the loop (bench/PROFILE.md,
session 9).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from cargohold.services.resumable_hash import ResumableHash

AHEAD = 2 << 20  # bytes queued for the thread before the loop waits: memory per upload
_pool: tuple[int, ThreadPoolExecutor] | None = None  # this process's, by process id


def hashing_threads() -> ThreadPoolExecutor:
    """This process's hashing threads, one per CPU (the work is CPU-bound). Not the default
    executor: a thread hashing a large body keeps it while the body streams in, and that
    executor's few threads are what every push's blob commit (fsync, rename) and the staged
    writes need. Made on first use, so a forked worker makes its own."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                                 thread_name_prefix="hash"))
    return _pool[1]


class HashQueue:
    """Feeds one hasher from the loop; every method but the worker's runs on the loop."""

    def __init__(self, hasher: ResumableHash) -> None:
        self.hasher = hasher
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._batches: deque[tuple[list[bytes], int]] = deque()  # with sizes; guarded by _lock
        self._queued = 0  # bytes in _batches and in the batch being hashed; guarded by _lock
        self._running = False  # a worker is draining _batches; guarded by _lock
        self._draining: asyncio.Future[None] | None = None  # the last worker started
        self._waiter: asyncio.Future[None] | None = None

    async def put(self, batch: list[bytes]) -> None:
        """Queue a batch; returns once no more than AHEAD bytes are left to hash."""
        size = sum(map(len, batch))
        with self._lock:
            self._batches.append((batch, size))
            self._queued += size
            start, self._running = not self._running, True
            queued = self._queued
        if start:
            self._draining = self._loop.run_in_executor(hashing_threads(), self._drain)
        while queued > AHEAD:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            with self._lock:
                queued = self._queued

    async def finish(self) -> None:
        """Wait until every queued batch is hashed."""
        if self._draining is not None:
            await self._draining

    async def abandon(self) -> None:
        """Drop the batches not yet started and wait for the one being hashed: no thread is
        left updating the hasher once this returns."""
        with self._lock:
            self._batches.clear()
        if self._draining is not None:
            await asyncio.wait([self._draining])

    def _drain(self) -> None:
        """On a pool thread: hash batches until none is left. The loop starts another worker
        only once this one has found none left, so batches are hashed in order, by one
        thread at a time."""
        try:
            while True:
                with self._lock:
                    if not self._batches:
                        self._running = False
                        return
                    batch, size = self._batches.popleft()
                for piece in batch:
                    self.hasher.update(piece)
                with self._lock:
                    self._queued -= size
                self._loop.call_soon_threadsafe(self._progressed)
        except BaseException:
            with self._lock:
                self._running = False  # `finish` raises it
            raise

    def _progressed(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
