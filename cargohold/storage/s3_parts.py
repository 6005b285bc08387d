"""Reading one large object as parallel ranged GETs, its bytes delivered strictly in order.

Why: from a distant store (AWS S3: tens of milliseconds to the first byte, around 100 MB/s
per connection) one GET is slow however fast the network is. Like the AWS CRT and s5cmd, the
read goes on as parts of `part_size` bytes, `window` of them in flight at once: the open GET
streams straight through up to the first part boundary, the next parts are read ahead into
memory, and each part that is done makes room for the next one. S3Transfer.get only switches
to parts when the single GET turns out slower than `read_parallel_below` (off by default):
from a store close by (SeaweedFS on the same machine) one GET is as fast, and parts cost CPU
(more requests, smaller reads, memory churn).

Memory: a transfer holds at most `window` parts, a constant. Across transfers, a process-wide
`ReadBudget` bounds the bytes that may be read ahead; a transfer that finds the budget used up
reads with a single GET instead. Parts resume on their own after a dropped connection (the
fetch passed in does), and closing the reader cancels the parts still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

Fetch = Callable[[int, int], AsyncIterator[bytes]]
_DONE = object()


class ReadBudget:
    """Bytes this process may hold in parts read ahead, shared by every transfer."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, amount: int) -> bool:
        """Reserve `amount` bytes; False (nothing reserved) when that would pass the limit."""
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give(self, amount: int) -> None:
        self.used -= amount


async def read_parts(fetch: Fetch, start: int, end: int, part_size: int, window: int,
                     head: AsyncIterator[bytes] | None = None,
                     head_end: int | None = None) -> AsyncIterator[bytes]:
    """Bytes [start, end) fetched as `fetch(lo, hi)` parts, `window` at a time, in order.

    `head`, a stream already open at `start` (the single GET that turned out slow), serves
    the bytes up to `head_end` while the parts after it are fetched; it is closed there.
    """
    parts: deque[tuple[asyncio.Queue[Any], asyncio.Task[None]]] = deque()
    position = start if head is None else min(max(head_end or start, start), end)
    head_length = position - start

    def launch() -> None:
        nonlocal position
        lo, position = position, min(position + part_size, end)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        parts.append((queue, asyncio.get_running_loop().create_task(_pump(fetch, lo, position,
                                                                          queue))))

    try:
        while position < end and len(parts) < window:
            launch()
        if head is not None:
            async for chunk in _until(head, head_length):
                yield chunk
        while parts:
            queue = parts[0][0]
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
            parts.popleft()
            if position < end:
                launch()
    finally:
        # The client went away or a part failed: stop the others and close their connections.
        tasks = [task for _, task in parts]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _until(head: AsyncIterator[bytes], length: int) -> AsyncIterator[bytes]:
    """The first `length` bytes of `head`, which is closed after them."""
    async with contextlib.aclosing(head):  # type: ignore[type-var]
        if length <= 0:
            return
        async for chunk in head:
            if len(chunk) >= length:
                if length:
                    yield chunk[:length] if len(chunk) > length else chunk
                return
            length -= len(chunk)
            yield chunk
    if length:
        raise EOFError(f"the object ended {length} bytes early")


async def _pump(fetch: Fetch, lo: int, hi: int, queue: asyncio.Queue[Any]) -> None:
    """One part's chunks into its queue, then _DONE, or the exception that ended it."""
    try:
        chunks = fetch(lo, hi)
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                queue.put_nowait(chunk)
    except Exception as exc:  # handed to the reader, which raises it in order
        queue.put_nowait(exc)
        return
    queue.put_nowait(_DONE)
