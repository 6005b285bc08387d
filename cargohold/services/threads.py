"""Long blocking work on threads of its own, awaited from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from cargohold.storage.thread_batches import settle

T = TypeVar("T")
WAIT_SLICE = 0.5  # seconds a blocked thread waits before it looks at its cancel flag again


async def in_thread(function: Callable[[], T], name: str,
                    on_cancel: Callable[[], None] | None = None) -> T:
    """Run a long blocking `function` on a thread of its own (not the default executor, whose
    few threads the database calls need). When the caller is cancelled, `on_cancel` tells the
    function to stop, and the thread is waited for before the cancellation goes on."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome: tuple[T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            loop.call_soon_threadsafe(settle, future, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        with contextlib.suppress(BaseException):
            await future
        raise
