"""An upload file that fills from an upstream while clients are served from it.

Why: on the first pull through the cache the bytes are written to the upload file anyway, so a
client is served from that file (sendfile: no copy through Python) as it fills, instead of
being handed each piece. `Filling` says how far the file may be served: never the newest piece
(nor the last byte of a range) until the whole blob has verified, so a truncated or wrong
transfer ends every client's response short (aborted) and stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading

from cargohold.services.threads import WAIT_SLICE
from cargohold.storage.thread_batches import settle


class Cancelled(Exception):
    """The waiting thread was told to stop."""


class Filling:
    """The progress of one upload file (thread-safe): the receiving thread `advance`s it,
    `complete`s it once verified, or `fail`s it; senders wait for bytes they may send."""

    def __init__(self, size: int | None, reader: int) -> None:
        self.size = size  # as the upstream announced it (None: not announced)
        self._reader: int | None = reader  # O_RDONLY on the upload file; dup'd per client
        self._cond = threading.Condition()
        self._servable = 0
        self._total: int | None = None  # set once verified
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- the transfer's side -----------------------------------------------------------------

    def advance(self, servable: int) -> None:
        with self._cond:
            self._servable = servable
            self._wake()

    def complete(self, total: int) -> None:
        with self._cond:
            self._servable = self._total = total
            self._wake()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self._total is None and self._error is None:
                self._error = error
            self._wake()

    def close(self) -> None:
        """The transfer is over: no new readers (those open keep reading)."""
        with self._cond:
            reader, self._reader = self._reader, None
            if self._total is None and self._error is None:
                self._error = ConnectionAbortedError("the upstream transfer ended")
            self._wake()
        if reader is not None:
            os.close(reader)

    def _wake(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
                loop.call_soon_threadsafe(settle, future, None, None)

    # -- the clients' side -------------------------------------------------------------------

    def open_reader(self) -> int | None:
        """A descriptor of the upload file for one client (its to close), or None once the
        transfer is over (the blob is then stored, or not)."""
        with self._cond:
            return os.dup(self._reader) if self._reader is not None else None

    def _window(self, offset: int, stop: int | None) -> int | None:
        """How far from `offset` a client may send now; `offset` itself at the verified end,
        None while it must wait. Raises the transfer's error."""
        if self._total is not None:
            return self._total if stop is None else min(stop, self._total)
        if self._error is not None:
            raise self._error
        limit = self._servable if stop is None else min(self._servable, stop - 1)
        return limit if limit > offset else None

    def wait(self, offset: int, stop: int | None, cancelled: threading.Event) -> int:
        """Block (a thread) until bytes past `offset` may be sent; see `_window`."""
        with self._cond:
            while (limit := self._window(offset, stop)) is None:
                if cancelled.is_set():
                    raise Cancelled
                self._cond.wait(WAIT_SLICE)
            return limit

    async def wait_async(self, offset: int, stop: int | None) -> int:
        """`wait` for a coroutine."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                limit = self._window(offset, stop)
                if limit is not None:
                    return limit
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            await future
