"""Large upload writes that bypass the page cache (O_DIRECT), staged in aligned buffers.

Why: a buffered write copies every byte into the page cache, and the data must be written
back before the blob is published: by the fsync that publishes it and, on ext4, by every
journal commit in between (a chunk's acknowledging database commit waited for that chunk's
writeback). Where writeback is slow (about 300 MB/s on the benchmark machine, whose disk
takes 2 GB/s of direct writes: bench/PROFILE.md, session 6), that bounded every large push.
Bytes written with O_DIRECT go from an aligned buffer to the device, on a thread while the
loop receives the next ones, and the publishing fsync finds only metadata left. The price:
a blob's first pull after its push reads it from the disk, not from the page cache (which a
large push then no longer floods either).

A request's bytes up to the first block boundary, and what is left below a whole block at
its end, go through the page cache: O_DIRECT needs aligned offsets and lengths, and those
edges are a block at most. Up to two buffers of a request are written while the loop fills
a third: with one write in flight, the loop waited for the disk about a third of a large
push (bench/PROFILE.md, session 9). A filesystem or device that refuses O_DIRECT (EINVAL)
gets buffered writes from then on. Staging buffers are bounded per process: a request that
finds none free writes through the page cache, as before.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
from collections import deque
from collections.abc import AsyncIterator

ALIGN = 4096  # a multiple of every logical block size in use (512 and 4096)
STAGE = 1024 * 1024  # bytes a staging buffer holds
PER_REQUEST = 3  # staging buffers a request holds: one filling while the others are written
MIN_DIRECT_TAIL = 64 * 1024  # a smaller remainder at the end goes through the page cache


def pwrite_all(fd: int, data: memoryview, position: int) -> None:
    while data:
        count = os.pwrite(fd, data, position)
        data, position = data[count:], position + count


class DirectWrites:
    """A store's use of O_DIRECT: on until refused, with a bounded pool of page-aligned
    staging buffers (anonymous maps), kept for reuse: a new map's pages are faulted in and
    zeroed on first touch, which costs more than the copy into them."""

    def __init__(self, enabled: bool = True, max_buffers: int = 4 * PER_REQUEST,
                 kept: int = PER_REQUEST) -> None:
        self.enabled = enabled and hasattr(os, "O_DIRECT")
        self.max_buffers = max_buffers  # in use at once in this process
        self.kept = kept
        self._free: list[mmap.mmap] = []
        self._in_use = 0
        self.direct_bytes = 0  # written past the page cache by this process, all told

    def take(self) -> tuple[mmap.mmap, ...] | None:
        """A request's staging buffers; None when direct writes are off or the process
        already stages as much as it may."""
        if not self.enabled or self._in_use + PER_REQUEST > self.max_buffers:
            return None
        self._in_use += PER_REQUEST
        return tuple(self._take() for _ in range(PER_REQUEST))

    def give(self, buffers: tuple[mmap.mmap, ...]) -> None:
        self._in_use -= len(buffers)
        for buffer in buffers:
            if len(self._free) < self.kept:
                self._free.append(buffer)
            else:
                buffer.close()

    def open(self, fd: int, path: str) -> int | None:
        """A second descriptor on the file open as `fd` (at `path`) that bypasses the page
        cache; None when it cannot be had, and buffered writes from then on where the
        filesystem refuses O_DIRECT."""
        if not self.enabled:
            return None
        for name in (f"/proc/self/fd/{fd}", path):  # the same file, even if since unlinked
            try:
                return os.open(name, os.O_WRONLY | os.O_DIRECT)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    self.enabled = False
                return None
        return None

    def _take(self) -> mmap.mmap:
        return self._free.pop() if self._free else mmap.mmap(-1, STAGE)


async def write_staged(fd: int, path: str, position: int, chunks: AsyncIterator[bytes],
                       direct: DirectWrites, buffers: tuple[mmap.mmap, ...]) -> int:
    """Write `chunks` into the file open as `fd` at `path` from `position` on; the position
    after the last byte. Once this returns, or raises, no write of it is still running."""
    staged = _StagedWrite(fd, path, position, direct, buffers)
    try:
        async for chunk in chunks:
            await staged.write(chunk)
        return await staged.finish()
    finally:
        await staged.settle()
        staged.close()


class _StagedWrite:
    """Edges through `fd`; whole staged buffers through a direct descriptor, each on a
    thread, while the loop fills the next free buffer."""

    def __init__(self, fd: int, path: str, position: int, direct: DirectWrites,
                 buffers: tuple[mmap.mmap, ...]) -> None:
        self.fd = fd
        self.path = path
        self.position = position  # the file position of the next byte given to `write`
        self.direct = direct
        self.buffers = buffers
        self._free = list(buffers)
        self._in_flight: deque[tuple[asyncio.Future[int], mmap.mmap]] = deque()  # oldest first
        self._direct_fd: int | None = None
        self._current: mmap.mmap | None = None  # filling, from file position `_start`
        self._start = position
        self._staged = 0

    async def write(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk).cast("B")
        if self._current is None and self.position % ALIGN:
            head = view[:ALIGN - self.position % ALIGN]
            pwrite_all(self.fd, head, self.position)
            self.position += len(head)
            view = view[len(head):]
        while view:
            if self._current is None:
                if not self._free:
                    await self._land_oldest(raise_error=True)
                self._current = self._free.pop()
                self._start, self._staged = self.position, 0
            count = min(len(view), STAGE - self._staged)
            self._current[self._staged:self._staged + count] = view[:count]
            self._staged += count
            self.position += count
            view = view[count:]
            if self._staged == STAGE:
                self._send(STAGE)

    async def finish(self) -> int:
        """Write what is staged and wait for every write: the file then holds every byte."""
        if self._current is not None:
            whole = self._staged - self._staged % ALIGN
            current, start = self._current, self._start
            if whole >= MIN_DIRECT_TAIL:
                self._send(whole)
            else:
                whole, self._current = 0, None
                self._free.append(current)
            pwrite_all(self.fd, memoryview(current)[whole:self._staged], start + whole)
        await self.settle(raise_error=True)
        return self.position

    async def settle(self, raise_error: bool = False) -> None:
        """Wait for every buffer in flight; an error is raised only when asked."""
        while self._in_flight:
            await self._land_oldest(raise_error)

    def close(self) -> None:
        self.direct.give(self.buffers)
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None

    async def _land_oldest(self, raise_error: bool) -> None:
        """Wait for the oldest write in flight and free its buffer. A cancelled wait leaves
        the write tracked: the `finally` of `write_staged` waits for it."""
        in_flight, buffer = self._in_flight[0]
        if raise_error:
            count = await asyncio.shield(in_flight)
            self.direct.direct_bytes += count
        else:
            await asyncio.wait([in_flight])
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved: the caller's own error is the one raised
        self._in_flight.popleft()
        self._free.append(buffer)

    def _send(self, count: int) -> None:
        """Hand the current buffer's first `count` bytes to a thread."""
        assert self._current is not None
        if self._direct_fd is None:
            self._direct_fd = self.direct.open(self.fd, self.path)
        buffer, start, self._current = self._current, self._start, None
        writing = asyncio.get_running_loop().run_in_executor(
            None, self._write_buffer, buffer, count, start)
        self._in_flight.append((writing, buffer))

    def _write_buffer(self, buffer: mmap.mmap, count: int, start: int) -> int:
        """Returns the bytes written past the page cache."""
        with memoryview(buffer) as whole:
            data = whole[:count]
            if self._direct_fd is not None:
                try:
                    pwrite_all(self._direct_fd, data, start)
                    return count
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # The device wants a larger alignment than ALIGN: buffered from now on.
                    self.direct.enabled = False
            pwrite_all(self.fd, data, start)
            return 0
