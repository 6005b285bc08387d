"""What one chunk of an upload must be (its range and length, checked as it streams through
the running digest), and the errors that refuse an upload request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from cargohold.services.hash_queue import HashQueue
from cargohold.services.resumable_hash import ResumableHash
from cargohold.wire.errors import ErrorCode, RegistryError

HASH_BATCH = 1 << 20
# The last MiB of a body of known length goes to the thread in smaller batches, so that little
# is left to hash on the loop, after the thread's last batch, before the request is answered.
HASH_TAIL_BATCH = 1 << 18


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """The inclusive byte range a chunk claims (`Content-Range: start-end`)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class UploadState:
    upload_id: str
    size: int


class ChunkSizeMismatch(Exception):
    pass


def unknown_upload(upload_id: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id})


def name_unknown(name: str) -> RegistryError:
    return RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name})


def chunk_length(upload_id: str, size: int, chunk_range: ChunkRange | None,
                  content_length: int | None) -> int | None:
    """The length a chunk declares (None: unknown), once its range is checked against the
    upload's acknowledged size."""
    if chunk_range is None:
        return content_length
    if chunk_range.start != size or chunk_range.end < chunk_range.start:
        raise range_error(upload_id, size)
    if content_length is not None and content_length != chunk_range.length:
        raise RegistryError(ErrorCode.SIZE_INVALID, "Content-Length does not match Content-Range",
                            {"contentLength": content_length,
                             "range": f"{chunk_range.start}-{chunk_range.end}"})
    return chunk_range.length


async def hashed(body: AsyncIterator[bytes], hasher: ResumableHash,
                 expected_length: int | None) -> AsyncIterator[bytes]:
    """The body's chunks, hashed as they pass, with their total length enforced.

    A large body is hashed on a thread, HASH_BATCH bytes at a time, while the event loop goes
    on receiving and writing the next chunks (hash_queue.py). A small body (below HASH_BATCH)
    is hashed right here, a thread hand-off costing more than that. A chunked push pays the
    end of each PATCH's hash before its 202: the last MiB of a body of known length goes to
    the thread in smaller batches, so little is left when its last byte arrives."""
    received = batch_bytes = 0
    batch: list[bytes] = []
    queue: HashQueue | None = None
    try:
        async for chunk in body:
            received += len(chunk)
            if expected_length is not None and received > expected_length:
                raise ChunkSizeMismatch
            batch.append(chunk)
            batch_bytes += len(chunk)
            near_end = expected_length is not None and expected_length - received < HASH_BATCH
            if batch_bytes >= (HASH_TAIL_BATCH if near_end else HASH_BATCH):
                if queue is None:
                    queue = HashQueue(hasher)
                await queue.put(batch)
                batch, batch_bytes = [], 0
            yield chunk
        if expected_length is not None and received != expected_length:
            raise ChunkSizeMismatch
        if queue is not None:
            await queue.finish()
    finally:
        if queue is not None:
            await queue.abandon()  # never leave a thread updating the hasher behind
    for chunk in batch:
        hasher.update(chunk)


def size_mismatch() -> RegistryError:
    return RegistryError(ErrorCode.SIZE_INVALID, "chunk length does not match the declared length")


def range_error(upload_id: str, size: int, message: str | None = None) -> RegistryError:
    # 416 tells the client where the upload stands, so it can resume from there.
    return RegistryError(ErrorCode.RANGE_INVALID, message or "chunk out of order",
                         {"upload": upload_id, "size": size},
                         headers={"Range": f"0-{max(size - 1, 0)}"})
