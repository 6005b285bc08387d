"""Writing one S3 object from a stream of chunks, all or nothing, in constant memory.

A write whose length is known (a request's Content-Length) and at most STREAMED_PUT_MAX is one
PutObject whose body is the stream itself: bytes go on to S3 as they arrive, with no
multipart round trips. Its last chunk is held back until the stream has ended and
`before_visible()` agreed; until then S3 holds fewer bytes than the declared Content-Length,
so a failure (a client that goes away, a wrong digest) ends the request and S3 keeps nothing.

Any other write is a multipart upload of PART_SIZE parts, buffered one at a time (one part
being sent while the next fills), so that a failed part is sent again; it appears at the
completion, after `before_visible()`; a failure aborts it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cargohold.storage.s3 import S3BlobStore

PART_SIZE = 8 * 1024 * 1024
STREAMED_PUT_MAX = 64 * 1024 * 1024


class LengthMismatch(ValueError):
    """The stream did not carry the number of bytes its writer declared."""


async def write_object(store: S3BlobStore, key: str, source: AsyncIterator[bytes],
                       before_visible: Callable[[], None] | None = None,
                       length: int | None = None) -> int:
    """Write `source` to `key` and return its size; see the module docstring."""
    if length is not None and length <= STREAMED_PUT_MAX:
        return await _put_streamed(store, key, source, length, before_visible)
    return await _put_multipart(store, key, source, before_visible)


async def _put_streamed(store: S3BlobStore, key: str, source: AsyncIterator[bytes],
                        length: int, before_visible: Callable[[], None] | None) -> int:
    failed: list[BaseException] = []

    async def body() -> AsyncIterator[bytes]:
        held, sent = b"", 0
        while True:
            try:
                chunk = await anext(source, None)
                if chunk is None:
                    if sent + len(held) != length:
                        raise LengthMismatch(f"{sent + len(held)} bytes, not {length}")
                    if before_visible is not None:
                        before_visible()
                    break
                if sent + len(held) + len(chunk) > length:
                    raise LengthMismatch(f"more than {length} bytes")
            except BaseException as exc:  # the source's failure, not the transport's
                failed.append(exc)
                raise
            if chunk:
                if held:
                    yield held
                    sent += len(held)
                held = chunk
        if held:
            yield held

    stream = body()
    if length == 0:  # no byte to hold back: finish the stream (and its checks) first
        async for _ in stream:
            pass
        await store.transfer.put(key, b"", 0)
        return 0
    try:
        await store.transfer.put(key, stream, length)
    except BaseException:
        if failed:
            raise failed[0] from None
        raise
    return length


async def _put_multipart(store: S3BlobStore, key: str, source: AsyncIterator[bytes],
                         before_visible: Callable[[], None] | None) -> int:
    buffer = bytearray()
    total, mpu, parts, sent = 0, None, [], 0
    sending: asyncio.Future[dict[str, Any]] | None = None

    async def upload_part(number: int, part: bytes) -> dict[str, Any]:
        assert mpu is not None
        etag = await store.transfer.upload_part(key, mpu, number, part)
        return {"PartNumber": number, "ETag": etag}

    async def send(part: bytes) -> None:
        nonlocal mpu, sending, sent
        if mpu is None:
            created = await store._call(store.client.create_multipart_upload,
                                        Bucket=store.bucket, Key=key)
            mpu = created["UploadId"]
        if sending is not None:
            parts.append(await sending)
        sent += 1
        sending = asyncio.ensure_future(upload_part(sent, part))

    try:
        async for chunk in source:
            buffer += chunk
            total += len(chunk)
            # Strictly more than a part: a write of exactly one part stays one PutObject.
            if len(buffer) > PART_SIZE:
                with memoryview(buffer) as view:  # one copy (a slice of the bytearray is two)
                    part = bytes(view[:PART_SIZE])
                del buffer[:PART_SIZE]
                await send(part)
        if mpu is None:
            if before_visible is not None:
                before_visible()
            await store.transfer.put(key, bytes(buffer), len(buffer))
            return total
        if buffer:
            await send(bytes(buffer))
        assert sending is not None
        parts.append(await sending)
        sending = None
        if before_visible is not None:
            before_visible()
        await store._call(store.client.complete_multipart_upload, Bucket=store.bucket,
                          Key=key, UploadId=mpu, MultipartUpload={"Parts": parts})
    except BaseException:
        if sending is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(sending)
        if mpu is not None:
            await asyncio.shield(store._abort(key, mpu))
        raise
    return total
