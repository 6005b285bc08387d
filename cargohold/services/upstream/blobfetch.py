"""One upstream transfer of a blob, teed: each piece goes to the first client and into the blob
store's upload as it arrives, and is hashed on a thread of its own meanwhile.

Why this shape: the first pull through the cache should cost about what a direct pull costs.
So nothing waits for the whole blob, pieces are passed on as aiohttp received them (no joins,
no copies), and the hash (the one CPU-heavy step) runs beside the event loop instead of in
front of it. The blob is committed only once the digest verifies; the client's last piece is
held back until then, so a failed, truncated or wrong transfer stores nothing and the client's
response is aborted rather than completed.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from cargohold.services.upstream.client import UpstreamClient
from cargohold.storage.blobstore import BlobStore
from cargohold.wire.digest import Digest

HASH_BACKLOG = 32 << 20  # bytes received but not hashed yet, before the receiver waits
QUEUE_PIECES = 64  # pieces queued for the client (each at most a socket read)

Deliver = Callable[[bytes | BaseException | None], Awaitable[None]]


class ThreadedHash:
    """A digest computed on its own thread: `feed` hands a piece over without copying it and
    waits only when the thread is more than HASH_BACKLOG bytes behind."""

    def __init__(self, algorithm: str) -> None:
        self._hash = hashlib.new(algorithm)
        self._pieces: deque[bytes | None] = deque()
        self._ready = threading.Condition()
        self._fed = 0
        self._hashed = 0
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[str] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="upstream-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pieces:
                    self._ready.wait()
                piece = self._pieces.popleft()
            if piece is None:
                break
            self._hash.update(piece)  # releases the GIL
            with self._ready:
                self._hashed += len(piece)
                self._ready.notify_all()
        result = self._hash.hexdigest()
        self._loop.call_soon_threadsafe(_resolve, self._done, result)

    def _push(self, piece: bytes | None) -> None:
        with self._ready:
            self._pieces.append(piece)
            self._ready.notify_all()

    def _wait_below(self, limit: int) -> None:
        with self._ready:
            while self._fed - self._hashed > limit and not self._closed:
                self._ready.wait()

    async def feed(self, piece: bytes) -> None:
        self._push(piece)
        self._fed += len(piece)
        if self._fed - self._hashed > HASH_BACKLOG:
            await asyncio.to_thread(self._wait_below, HASH_BACKLOG // 2)

    async def hexdigest(self) -> str:
        self._push(None)
        return await self._done

    def close(self) -> None:
        """Stop the thread (after the pieces already fed); the digest is not wanted."""
        with self._ready:
            self._closed = True
            self._pieces.clear()
            self._pieces.append(None)
            self._ready.notify_all()


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


async def tee(blobs: BlobStore, client: UpstreamClient, response: aiohttp.ClientResponse,
              digest: Digest, deliver: Deliver) -> int:
    """Store the body of `response` as the blob `digest` while `deliver` passes each piece to
    the client: None ends the client's body, an exception aborts it. Returns the size stored;
    raises (storing nothing) when the transfer fails or the bytes do not match."""
    size = response.content_length
    upload_id = str(uuid.uuid4())
    hasher = ThreadedHash(digest.algorithm)
    held: list[bytes] = []  # the newest piece waits: the client's last one needs the digest

    async def relay() -> AsyncIterator[bytes]:
        received = 0
        try:
            async for piece, _ in response.content.iter_chunks():
                if not piece:
                    continue
                received += len(piece)
                if size is not None and received > size:
                    raise client.error(502, f"sent more than the {size} bytes announced")
                await hasher.feed(piece)
                if held:
                    await deliver(held.pop())
                held.append(piece)
                yield piece
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise client.error(None, f"blob transfer of {digest} failed after {received} "
                               f"bytes ({type(exc).__name__}: {exc})") from None

    try:
        await blobs.create_upload(upload_id)
        async with blobs.open_upload(upload_id) as writer:
            written = await writer.write_at(0, relay())
        if size is not None and written != size:
            raise client.error(502, f"blob transfer of {digest} stopped at {written} of "
                               f"{size} bytes")
        if await hasher.hexdigest() != digest.hex:
            raise client.error(502, f"sent bytes that do not match {digest}")
        # Verified: the client gets the last piece and the end while the blob is fsynced
        # (should that fail, nothing is stored and the next pull fetches again).
        if held:
            await deliver(held.pop())
        await deliver(None)
        await blobs.commit_upload(upload_id, written, str(digest))
        return written
    except BaseException:
        hasher.close()
        await blobs.delete_upload(upload_id)
        raise


class Fetch:
    """One upstream transfer of a blob, and the one client it streams to."""

    def __init__(self) -> None:
        # The upstream's announced size once it answers; STORED when the lock holder before
        # us stored the blob meanwhile (the normal path serves it).
        self.ready: asyncio.Future[int | object | None] = \
            asyncio.get_running_loop().create_future()
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_PIECES)
        self.listening = True
        self.task: asyncio.Task[None] | None = None

    async def offer(self, item: bytes | BaseException | None) -> None:
        if self.listening:
            await self.queue.put(item)

    async def listen(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The client is gone (or done): the transfer goes on, storing, without it.
            self.listening = False
            while not self.queue.empty():
                self.queue.get_nowait()


STORED = object()
