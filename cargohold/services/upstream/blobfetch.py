"""One upstream transfer of a blob through aiohttp, teed: each piece goes to the first client
and into the blob store as it arrives, and is hashed on a thread of its own meanwhile. This is
the path of stores whose uploads are not local files (S3: straight to the content address); a
filesystem store receives on a thread into the upload file instead (`blobreceive`).

Why this shape: the first pull through the cache should cost about what a direct pull costs.
So nothing waits for the whole blob, pieces are passed on as aiohttp received them (no joins,
no copies), and the hash (the one CPU-heavy step) runs on a thread beside the event loop
instead of in front of it. The blob is committed only once the digest verifies; the client's
last piece is held back until then, so a failed, truncated or wrong transfer stores nothing
and the client's response is aborted rather than completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from cargohold.services.upstream.client import UpstreamClient, UpstreamError
from cargohold.storage.blobstore import BlobStore, BlobUnverified
from cargohold.storage.thread_batches import settle
from cargohold.wire.digest import Digest

BACKLOG = 8 << 20  # bytes received but not hashed yet, before the receiver waits
QUEUE_PIECES = 32  # pieces queued for the client (each at most one socket read)

Deliver = Callable[[bytes | BaseException | None], Awaitable[None]]


class PieceWorker:
    """Hashes the pieces of a transfer on a thread of its own: `feed` hands a piece over
    without copying it and waits only when the thread is more than BACKLOG bytes behind."""

    def __init__(self, algorithm: str) -> None:
        self._hash = hashlib.new(algorithm)
        self._pieces: deque[bytes | None] = deque()
        self._ready = threading.Condition()
        self._fed = 0
        self._done_bytes = 0
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[str] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="upstream-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._pieces:
                        self._ready.wait()
                    piece = self._pieces.popleft()
                if piece is None:
                    break
                if not self._closed:
                    self._hash.update(piece)  # releases the GIL
                with self._ready:
                    self._done_bytes += len(piece)
                    self._ready.notify_all()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                self._loop.call_soon_threadsafe(settle, self._done, self._hash.hexdigest(),
                                                None)

    def _push(self, piece: bytes | None) -> None:
        with self._ready:
            self._pieces.append(piece)
            self._ready.notify_all()

    def _wait_below(self, limit: int) -> None:
        with self._ready:
            while self._fed - self._done_bytes > limit and not self._closed:
                self._ready.wait()

    async def feed(self, piece: bytes) -> None:
        self._push(piece)
        self._fed += len(piece)
        if self._fed - self._done_bytes > BACKLOG:
            await asyncio.to_thread(self._wait_below, BACKLOG // 2)

    async def result(self) -> str:
        """The hex digest, once every piece fed is hashed."""
        self._push(None)
        return await self._done

    def close(self) -> None:
        """Stop the thread (pieces not yet taken are skipped); the result is not wanted."""
        with self._ready:
            self._closed = True
            self._pieces.clear()
            self._pieces.append(None)
            self._ready.notify_all()


async def tee(blobs: BlobStore, client: UpstreamClient, response: aiohttp.ClientResponse,
              digest: Digest, deliver: Deliver) -> int:
    """Store the body of `response` as the blob `digest` while `deliver` passes each piece to
    the client: None ends the client's body, an exception aborts it. Returns the size stored;
    raises (storing nothing) when the transfer fails or the bytes do not match."""
    transfer = _Tee(client, response, digest, deliver)
    if blobs.prefers_direct_writes:  # S3: straight to the content address, no staging copy
        return await transfer.direct(blobs)
    return await transfer.staged(blobs)


class _Tee:
    def __init__(self, client: UpstreamClient, response: aiohttp.ClientResponse,
                 digest: Digest, deliver: Deliver) -> None:
        self.client = client
        self.response = response
        self.digest = digest
        self.deliver = deliver
        self.size = response.content_length
        self.received = 0
        self.held: list[bytes] = []  # the newest piece waits: the last one needs the digest

    async def relay(self, worker: PieceWorker) -> AsyncIterator[bytes]:
        try:
            async for piece, _ in self.response.content.iter_chunks():
                if not piece:
                    continue
                self.received += len(piece)
                if self.size is not None and self.received > self.size:
                    raise self.client.error(502, f"sent more than the {self.size} bytes "
                                            "announced")
                await worker.feed(piece)
                if self.held:
                    await self.deliver(self.held.pop())
                self.held.append(piece)
                yield piece
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transfer_failed(self.client, self.digest, self.received, exc) from None

    def problem(self, actual: str) -> UpstreamError | None:
        """Why the bytes received are not the blob, or None."""
        return transfer_problem(self.client, self.digest, self.size, self.received, actual)

    async def finish(self) -> None:
        """Verified: the client gets the last piece and the end."""
        if self.held:
            await self.deliver(self.held.pop())
        await self.deliver(None)

    async def direct(self, blobs: BlobStore) -> int:
        worker = PieceWorker(self.digest.algorithm)
        actual = ""

        async def verified_pieces() -> AsyncIterator[bytes]:
            nonlocal actual
            async for piece in self.relay(worker):
                yield piece
            actual = await worker.result()

        try:
            # The announced length lets S3 take the blob as one streamed PutObject.
            written = await blobs.write_blob(str(self.digest), verified_pieces(),
                                             lambda: self.problem(actual) is None, self.size)
        except BlobUnverified:
            raise self.problem(actual) or self.client.error(
                502, f"{self.digest} did not verify") from None
        finally:
            worker.close()
        await self.finish()
        return written

    async def staged(self, blobs: BlobStore) -> int:
        upload_id = str(uuid.uuid4())
        worker: PieceWorker | None = None
        try:
            await blobs.create_upload(upload_id)
            async with blobs.open_upload(upload_id) as writer:
                worker = PieceWorker(self.digest.algorithm)
                await writer.write_at(0, self.relay(worker))
                error = self.problem(await worker.result())
            if error is not None:
                raise error
            # The blob is fsynced while the client receives the end (should that fail,
            # nothing is stored and the next pull fetches again).
            await self.finish()
            await blobs.commit_upload(upload_id, self.received, str(self.digest),
                                      writer.state)
            return self.received
        except BaseException:
            if worker is not None:
                worker.close()
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


def transfer_failed(client: UpstreamClient, digest: Digest, received: int,
                    exc: BaseException) -> UpstreamError:
    """The error for an upstream blob transfer that broke off."""
    return client.error(None, f"blob transfer of {digest} failed after {received} bytes "
                        f"({type(exc).__name__}: {exc})")


def transfer_problem(client: UpstreamClient, digest: Digest, size: int | None, received: int,
                     actual: str) -> UpstreamError | None:
    """Why the bytes an upstream sent (`received` of them, hashing to `actual`) are not the
    blob `digest` of the announced `size`, or None."""
    if size is not None and received != size:
        return client.error(502, f"blob transfer of {digest} stopped at {received} of {size} "
                            "bytes")
    if actual != digest.hex:
        return client.error(502, f"sent bytes that do not match {digest}")
    return None
