"""Reading one large object as parallel ranged GETs, its bytes delivered strictly in order.

Why: one GET streams at the pace of one request through the store (a SeaweedFS or S3 server
fetches its chunks one after the other, and TCP flow control stalls it whenever the client is
slow to read). Like the AWS CRT and s5cmd, a large read is split into parts of `part_size`
bytes, `window` of them in flight at once: the first part streams straight through as its
bytes arrive, the next ones are read ahead into memory, and each part that is done makes room
for the next one.

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


async def read_parts(fetch: Fetch, start: int, end: int, part_size: int,
                     window: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) fetched as `fetch(lo, hi)` parts, `window` at a time, in order."""
    parts: deque[tuple[asyncio.Queue[Any], asyncio.Task[None]]] = deque()
    position = start

    def launch() -> None:
        nonlocal position
        lo, position = position, min(position + part_size, end)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        parts.append((queue, asyncio.get_running_loop().create_task(_pump(fetch, lo, position,
                                                                          queue))))

    try:
        while position < end and len(parts) < window:
            launch()
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
