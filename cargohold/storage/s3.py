"""Blobs in an S3-compatible object store (AWS S3, Ceph RGW, MinIO, SeaweedFS), via botocore.

Layout under the configured prefix:
    blobs/<alg>/<2 hex>/<hex>     a verified blob, under its content address
    uploads/<id>/seg-<uuid>       the staging segments of an upload session

Each write to an upload (a PATCH, an ECR UploadLayerPart, a final PUT's body) streams into one
new staging segment, in constant memory (storage/s3_writes.py: one streamed PutObject when the
request declares its length, else a multipart upload of 8 MiB parts). Segment keys are unique per
write, so two nodes racing on one session never overwrite each other's bytes: the database's
compare-and-set of the acknowledged size picks the winner, and stores the winner's segment list
(the scratch state, see blobstore.py) with it. Every segment but the last is at least S3's
5 MiB minimum part: a write that follows a smaller segment first copies that segment's bytes
(under 5 MiB, read back once) into its own, so chunks of any size work.

Commit, after the caller verified the digest: one server-side CopyObject (a single segment) or a
multipart upload of UploadPartCopy ranges (several), whose completion makes the blob appear at
its content address atomically; then the staging objects are deleted.

Bytes move on the event loop (storage/s3_transfer.py: aiohttp, with requests presigned locally
by botocore), except a large proxied pull from a plain-HTTP endpoint, which the HTTP layer
splices from the store's socket onto the client's (storage/s3_raw.py); the control operations
run botocore on a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from cargohold.config import BlobStoreSettings
from cargohold.storage.blobstore import (
    BlobLocation,
    BlobMissing,
    BlobUnverified,
    RawOpener,
    UploadMissing,
)
from cargohold.storage.s3_parts import ReadBudget
from cargohold.storage.s3_raw import open_raw, raw_reads_possible
from cargohold.storage.s3_transfer import READ_TIMEOUT, S3Transfer
from cargohold.storage.s3_writes import write_object

MIN_PART = 5 * 1024 * 1024
COPY_PART_MAX = 4 * 1024 * 1024 * 1024  # UploadPartCopy takes at most 5 GiB per part
COPY_CONCURRENCY = 4
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def make_client(settings: BlobStoreSettings) -> Any:
    """A botocore S3 client; credentials left out of the settings come from the AWS chain."""
    session = botocore.session.get_session()
    config = Config(
        region_name=settings.region or session.get_config_variable("region") or "us-east-1",
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style},
        max_pool_connections=64,
        retries={"max_attempts": 4, "mode": "standard"},
        # Our own digest covers integrity end to end; skip a second checksum of every byte.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.create_client(
        "s3", endpoint_url=settings.endpoint_url, aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key, config=config)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND


def _segments(state: str | None) -> list[tuple[str, int]]:
    if not state:
        return []
    return [(str(key), int(size)) for key, size in json.loads(state)["segments"]]


def _dump(segments: list[tuple[str, int]]) -> str:
    return json.dumps({"segments": [[key, size] for key, size in segments]})


class S3BlobStore:
    """A `BlobStore` in one bucket, under one key prefix."""

    def __init__(self, settings: BlobStoreSettings, client: Any | None = None) -> None:
        if not settings.bucket:
            raise ValueError("blob_store.bucket is required for the s3 backend")
        self.bucket = settings.bucket
        prefix = settings.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.client = client if client is not None else make_client(settings)
        self.transfer = S3Transfer(self.client, self.bucket, settings.read_part_size,
                                   settings.read_window, ReadBudget(settings.read_budget),
                                   settings.read_parallel_below * 1e6)
        self.description = f"s3://{self.bucket}/{self.prefix}"
        # botocore is synchronous: its calls run on a pool of their own, off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="s3")
        self._background: set[asyncio.Task[None]] = set()
        self._raw_reads: bool | None = None  # see raw_opener

    async def _call(self, method: Callable[..., Any], **params: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(method, **params))

    def blob_key(self, digest: str) -> str:
        match = _DIGEST.match(digest)
        if not match:
            raise ValueError(f"invalid digest {digest!r}")
        algorithm, hexpart = match.groups()
        return f"{self.prefix}blobs/{algorithm}/{hexpart[:2]}/{hexpart}"

    def upload_prefix(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{uuid.UUID(upload_id)}/"

    # -- blobs --------------------------------------------------------------------------------

    async def check(self) -> None:
        await self._call(self.client.head_bucket, Bucket=self.bucket)

    async def locate(self, digest: str, size: int | None = None) -> BlobLocation | None:
        if size is not None:
            # The recorded size: no HeadObject round trip before the GET, which raises
            # BlobMissing before its first byte if the object is gone after all.
            return BlobLocation(path=None, size=size)
        try:
            size = await self.transfer.size(self.blob_key(digest))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return BlobLocation(path=None, size=size)

    async def read(self, digest: str, start: int = 0,
                   end: int | None = None) -> AsyncIterator[bytes]:
        chunks = self._stream(self.blob_key(digest), start, end)
        async with contextlib.aclosing(chunks):
            try:
                first = await anext(chunks, None)
            except ClientError as exc:
                if _missing(exc):
                    raise BlobMissing(digest) from exc
                raise
            if first is None:
                return
            yield first
            async for chunk in chunks:
                yield chunk

    async def _stream(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        chunks = self.transfer.get(key, start, end)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    def raw_opener(self, digest: str) -> RawOpener | None:
        """Opens the blob's bytes for a relay past Python (storage/s3_raw.py), or None when
        this store must be read through `read`: a TLS or proxied endpoint, or parallel
        ranged reads configured (they are for a distant store, which one GET reads slowly)."""
        key = self.blob_key(digest)
        if self._raw_reads is None:  # decided once: every key of the bucket has one host
            self._raw_reads = (self.transfer.parallel_below <= 0
                               and raw_reads_possible(self.transfer.get_url(key)))
        if not self._raw_reads:
            return None
        # Signed at each opening (a resume may come after the first URL expired).
        return lambda start, stop: open_raw(self.transfer.get_url(key), start, stop,
                                            READ_TIMEOUT)

    async def delete(self, digest: str) -> None:
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=self.blob_key(digest))

    def presign(self, digest: str, expires_seconds: int) -> str | None:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
            ExpiresIn=expires_seconds))

    # -- uploads ------------------------------------------------------------------------------

    async def create_upload(self, upload_id: str) -> None:
        self.upload_prefix(upload_id)  # validates; segments appear with the first write

    @contextlib.asynccontextmanager
    async def open_upload(self, upload_id: str) -> AsyncIterator[_S3UploadWriter]:
        # No lock: concurrent writers write distinct segments and the database's
        # compare-and-set of the acknowledged size decides which one counts.
        yield _S3UploadWriter(self, self.upload_prefix(upload_id))

    async def read_upload(self, upload_id: str, start: int, end: int,
                          state: str | None = None) -> AsyncIterator[bytes]:
        self.upload_prefix(upload_id)
        position = 0
        for key, size in _segments(state):
            lo, hi = max(start, position), min(end, position + size)
            if lo < hi:
                async for chunk in self._stream(key, lo - position, hi - position):
                    yield chunk
            position += size
        if position < end:
            raise UploadMissing(upload_id)

    async def commit_upload(self, upload_id: str, size: int, digest: str,
                            state: str | None = None) -> None:
        target = self.blob_key(digest)
        segments = _segments(state)
        ranges = _copy_ranges(segments, size)
        if sum(hi - lo for _, lo, hi in ranges) != size:
            raise UploadMissing(upload_id)
        # Always written, even when the blob is already there: identical bytes, and a fresh
        # LastModified that a garbage collector's grace period can rely on.
        if not ranges:
            await self._call(self.client.put_object, Bucket=self.bucket, Key=target, Body=b"")
        elif len(ranges) == 1 and ranges[0][1:] == (0, segments[0][1]):
            await self._call(self.client.copy_object, Bucket=self.bucket, Key=target,
                             CopySource={"Bucket": self.bucket, "Key": ranges[0][0]})
        else:
            await self._copy_parts(target, ranges)
        self._in_background(self.delete_upload(upload_id))

    async def _copy_parts(self, target: str, ranges: list[tuple[str, int, int]]) -> None:
        created = await self._call(self.client.create_multipart_upload, Bucket=self.bucket,
                                   Key=target)
        mpu = created["UploadId"]
        # The copies are independent: a few at a time (the store copies in parallel too).
        limit = asyncio.Semaphore(COPY_CONCURRENCY)

        async def copy(number: int, key: str, lo: int, hi: int) -> dict[str, Any]:
            async with limit:
                copied = await self._call(
                    self.client.upload_part_copy, Bucket=self.bucket, Key=target, UploadId=mpu,
                    PartNumber=number, CopySource={"Bucket": self.bucket, "Key": key},
                    CopySourceRange=f"bytes={lo}-{hi - 1}")
            return {"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]}

        try:
            copies = [asyncio.ensure_future(copy(number, *piece))
                      for number, piece in enumerate(ranges, start=1)]
            try:
                parts = await asyncio.gather(*copies)
            except BaseException:
                for task in copies:
                    task.cancel()
                await asyncio.gather(*copies, return_exceptions=True)
                raise
            await self._call(self.client.complete_multipart_upload, Bucket=self.bucket,
                             Key=target, UploadId=mpu, MultipartUpload={"Parts": parts})
        except BaseException:
            await asyncio.shield(self._abort(target, mpu))
            raise

    async def delete_upload(self, upload_id: str) -> None:
        """Delete the upload's staging objects and abort its unfinished multipart uploads."""
        prefix = self.upload_prefix(upload_id)
        keys = [key for key, _ in await self._call(self._list, prefix=prefix)]
        for start in range(0, len(keys), 1000):
            await self._call(self.client.delete_objects, Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})
        for key, mpu, _ in await self._call(self._list_multipart, prefix=prefix):
            await self._abort(key, mpu)

    async def idle_uploads(self, idle_since: float) -> list[str]:
        root = f"{self.prefix}uploads/"
        newest: dict[str, float] = {}
        listed = await self._call(self._list, prefix=root)
        multipart = await self._call(self._list_multipart, prefix=root)
        for key, stamp in [*listed, *((key, stamp) for key, _, stamp in multipart)]:
            upload_id = key[len(root):].split("/", 1)[0]
            newest[upload_id] = max(newest.get(upload_id, 0.0), stamp)
        idle = []
        for upload_id, stamp in newest.items():
            with contextlib.suppress(ValueError):
                if stamp < idle_since and str(uuid.UUID(upload_id)) == upload_id:
                    idle.append(upload_id)
        return idle

    async def list_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every object under `blobs/` that names a digest, a page (1,000 keys) at a time."""
        root = f"{self.prefix}blobs/"
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root}
            if token is not None:
                params["ContinuationToken"] = token
            page = await self._call(self.client.list_objects_v2, **params)
            for item in page.get("Contents", []):
                algorithm, _, rest = item["Key"][len(root):].partition("/")
                digest = f"{algorithm}:{rest.rpartition('/')[2]}"
                if _DIGEST.match(digest) and self.blob_key(digest) == item["Key"]:
                    yield digest, int(item["Size"]), item["LastModified"].timestamp()
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    # -- internals ----------------------------------------------------------------------------

    def _list(self, prefix: str) -> list[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix)
        return [(item["Key"], item["LastModified"].timestamp())
                for page in pages for item in page.get("Contents", [])]

    def _list_multipart(self, prefix: str) -> list[tuple[str, str, float]]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return [(item["Key"], item["UploadId"], item["Initiated"].timestamp())
                for page in pages for item in page.get("Uploads", [])]

    async def _abort(self, key: str, mpu: str) -> None:
        with contextlib.suppress(ClientError):
            await self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                             UploadId=mpu)

    def _in_background(self, work: Any) -> None:
        """Clean-up nobody waits for; if the process dies first, the upload purge finds it."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # A monolithic push goes straight to its content address: no staging object, no copy.
    prefers_direct_writes = True

    async def write_blob(self, digest: str, chunks: AsyncIterator[bytes],
                         verified: Callable[[], bool], length: int | None = None) -> int:
        def check() -> None:
            if not verified():
                raise BlobUnverified(digest)

        return await write_object(self, self.blob_key(digest), chunks, check, length)

    def close(self) -> None:
        self.transfer.close()
        self._pool.shutdown(wait=False)


def _copy_ranges(segments: list[tuple[str, int]], size: int) -> list[tuple[str, int, int]]:
    """The (segment key, start, end) pieces that make the first `size` bytes, as parts of at
    most COPY_PART_MAX bytes; only the last may be under 5 MiB, as segments guarantee."""
    ranges, position = [], 0
    for key, length in segments:
        length = min(length, size - position)
        if length <= 0:
            break
        pieces = -(-length // COPY_PART_MAX)
        step = -(-length // pieces)
        ranges += [(key, lo, min(lo + step, length)) for lo in range(0, length, step)]
        position += length
    return ranges


class _S3UploadWriter:
    """Appends to an upload as new segments; the acknowledged segment list is `state`."""

    def __init__(self, store: S3BlobStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.state: str | None = None

    async def write_at(self, offset: int, chunks: AsyncIterator[bytes],
                       length: int | None = None) -> int:
        segments = _segments(self.state)
        stored = sum(size for _, size in segments)
        if stored != offset:
            raise UploadMissing(f"scratch state covers {stored} bytes, not {offset}")
        carried: tuple[str, int] | None = None
        if segments and segments[-1][1] < MIN_PART:
            carried = segments.pop()  # too small to be a part: its bytes start the new segment

        async def source() -> AsyncIterator[bytes]:
            if carried is not None:
                async for chunk in self.store._stream(carried[0], 0, carried[1]):
                    yield chunk
            async for chunk in chunks:
                yield chunk

        key = f"{self.prefix}seg-{uuid.uuid4().hex}"
        if length is not None and carried is not None:
            length += carried[1]
        written = await write_object(self.store, key, source(), length=length)
        if written:
            segments.append((key, written))
        self.state = _dump(segments)
        return offset + written - (carried[1] if carried else 0)

    async def truncate(self, size: int) -> None:
        # Nothing to cut: the bytes of an unacknowledged write are in a segment that no
        # acknowledged state lists; it goes with the upload's other staging objects.
        return None

    def untouched(self) -> bool:
        return False  # concurrent writers leave segments that only the database sorts out
