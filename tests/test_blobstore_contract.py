"""One contract for every BlobStore backend, run against each (as the CNCF registry tests every
storage driver with one suite): the filesystem, and S3 on a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from seaweed import SeaweedS3

from cargohold.config import BlobStoreSettings
from cargohold.storage.blobstore import BlobMissing, BlobStore, BlobUnverified
from cargohold.storage.filesystem import FilesystemBlobStore
from cargohold.storage.s3 import MIN_PART, S3BlobStore

MiB = 1024 * 1024


# "s3-parts": every read longer than 512 KiB goes on as parallel ranged GETs (a threshold
# no store reaches), 3 parts in flight: the contract holds for that read path too.
PARTS = {"read_part_size": 256 * 1024, "read_window": 3, "read_parallel_below": 1e9}


@pytest.fixture(params=["filesystem", "s3", "s3-parts"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "blobs")
        return
    seaweed: SeaweedS3 = request.getfixturevalue("seaweed_s3")
    settings = BlobStoreSettings(**seaweed.blob_store_settings(
        seaweed.new_bucket(), prefix="registry/",
        **(PARTS if request.param == "s3-parts" else {})))
    s3 = S3BlobStore(settings)
    yield s3
    s3.close()


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def write(store: BlobStore, upload_id: str, offset: int, data: bytes,
                state: str | None, declared: bool = False) -> tuple[int, str | None]:
    """One write; `declared`: with its length, as a request with a Content-Length."""
    async with store.open_upload(upload_id) as writer:
        writer.state = state
        size = await writer.write_at(offset, chunks_of(data),
                                     len(data) if declared else None)
        return size, writer.state


def test_store_is_healthy(store: BlobStore) -> None:
    run(store.check)


def test_reading_an_absent_blob_raises_blob_missing(store: BlobStore) -> None:
    """Before any byte, so that a pull can still answer 404; `locate` with the recorded size
    may skip its existence check, but never invents a location without one."""
    digest = digest_of(b"never stored")

    async def scenario() -> None:
        with pytest.raises(BlobMissing):
            await collect(store.read(digest))
        with pytest.raises(BlobMissing):
            await collect(store.read(digest, 3, 10))
        assert await store.locate(digest) is None

    run(scenario)


def test_upload_commit_read_delete(store: BlobStore) -> None:
    data = os.urandom(3 * MiB + 17)
    digest = digest_of(data)

    async def scenario() -> None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        size, state = await write(store, upload_id, 0, data, None)
        assert size == len(data)
        assert await collect(store.read_upload(upload_id, 0, size, state)) == data
        assert await collect(store.read_upload(upload_id, 5, 1000, state)) == data[5:1000]
        assert await store.locate(digest) is None
        await store.commit_upload(upload_id, size, digest, state)
        location = await store.locate(digest)
        assert location is not None and location.size == len(data)
        assert await collect(store.read(digest)) == data
        assert await collect(store.read(digest, 100)) == data[100:]
        assert await collect(store.read(digest, 10, 20)) == data[10:20]
        assert await collect(store.read(digest, len(data) - 1, len(data))) == data[-1:]
        await store.delete(digest)
        assert await store.locate(digest) is None

    run(scenario)


def test_list_blobs_names_every_committed_blob_and_nothing_else(store: BlobStore) -> None:
    """What fsck's orphan check and garbage collection rely on: committed blobs are listed
    with their sizes; upload scratch is not; a deleted blob is gone from the listing."""
    blobs = [os.urandom(size) for size in (0, 1000, 70_000)]

    async def scenario() -> None:
        for data in blobs:
            upload_id = str(uuid.uuid4())
            await store.create_upload(upload_id)
            size, state = await write(store, upload_id, 0, data, None)
            await store.commit_upload(upload_id, size, digest_of(data), state)
        scratch = str(uuid.uuid4())
        await store.create_upload(scratch)
        await write(store, scratch, 0, b"not a blob yet", None)
        listed = {digest: size async for digest, size, _ in store.list_blobs()}
        assert listed == {digest_of(data): len(data) for data in blobs}
        await store.delete(digest_of(blobs[1]))
        listed = {digest async for digest, _, _ in store.list_blobs()}
        assert listed == {digest_of(blobs[0]), digest_of(blobs[2])}

    run(scenario)


@pytest.mark.parametrize("declared", [False, True])
def test_chunks_of_any_size_make_one_blob(store: BlobStore, declared: bool) -> None:
    """Small chunks (under S3's 5 MiB part minimum) and large ones, in one upload, with
    lengths declared or not."""
    sizes = [1, 3 * MiB, MIN_PART - 1, 2 * MiB, 11 * MiB + 3, 100, 6 * MiB]
    pieces = [os.urandom(n) for n in sizes]
    data = b"".join(pieces)

    async def scenario() -> None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        offset, state = 0, None
        for piece in pieces:
            offset, state = await write(store, upload_id, offset, piece, state, declared)
        assert offset == len(data)
        assert await collect(store.read_upload(upload_id, 0, offset, state)) == data
        await store.commit_upload(upload_id, offset, digest_of(data), state)
        assert await collect(store.read(digest_of(data))) == data
        assert await collect(store.read(digest_of(data), 4 * MiB, 9 * MiB)) == \
            data[4 * MiB:9 * MiB]

    run(scenario)


@pytest.mark.parametrize("declared", [None, 20 * MiB])
def test_failed_write_leaves_the_acknowledged_bytes(store: BlobStore,
                                                    declared: int | None) -> None:
    """A write that fails midway, as a multipart upload (no length) or a streamed one."""
    first, second = os.urandom(MiB), os.urandom(2 * MiB)

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)  # more than a part: a multipart upload is under way
        raise ConnectionResetError("client went away")

    async def scenario() -> None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        size, state = await write(store, upload_id, 0, first, None)
        async with store.open_upload(upload_id) as writer:
            writer.state = state
            with pytest.raises(ConnectionResetError):
                await writer.write_at(size, failing(), declared)
        size, state = await write(store, upload_id, size, second, state)
        assert size == len(first + second)
        await store.commit_upload(upload_id, size, digest_of(first + second), state)
        assert await collect(store.read(digest_of(first + second))) == first + second

    run(scenario)


def test_unacknowledged_write_is_superseded(store: BlobStore) -> None:
    """A write nobody acknowledged (a crash, or the loser of a race between two nodes) does not
    change what a write from the acknowledged offset produces."""
    lost, kept = os.urandom(MiB), os.urandom(MiB + 5)

    async def scenario() -> None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        await write(store, upload_id, 0, lost, None)
        size, state = await write(store, upload_id, 0, kept, None)
        await store.commit_upload(upload_id, size, digest_of(kept), state)
        assert await collect(store.read(digest_of(kept))) == kept

    run(scenario)


def test_commit_of_a_present_blob_and_the_empty_blob(store: BlobStore) -> None:
    data = os.urandom(1000)

    async def scenario() -> None:
        for _ in range(2):
            upload_id = str(uuid.uuid4())
            await store.create_upload(upload_id)
            size, state = await write(store, upload_id, 0, data, None)
            await store.commit_upload(upload_id, size, digest_of(data), state)
        assert await collect(store.read(digest_of(data))) == data
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        size, state = await write(store, upload_id, 0, b"", None)
        await store.commit_upload(upload_id, 0, digest_of(b""), state)
        location = await store.locate(digest_of(b""))
        assert location is not None and location.size == 0
        assert await collect(store.read(digest_of(b""))) == b""

    run(scenario)


def test_idle_uploads_and_their_removal(store: BlobStore) -> None:
    async def scenario() -> None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        await write(store, upload_id, 0, os.urandom(10 * MiB), None)
        assert upload_id not in await store.idle_uploads(time.time() - 3600)
        assert upload_id in await store.idle_uploads(time.time() + 3600)
        await store.delete_upload(upload_id)
        assert upload_id not in await store.idle_uploads(time.time() + 3600)

    run(scenario)


def test_presigned_url_serves_the_blob_without_credentials(store: BlobStore) -> None:
    data = os.urandom(4096)

    async def scenario() -> str | None:
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        size, state = await write(store, upload_id, 0, data, None)
        await store.commit_upload(upload_id, size, digest_of(data), state)
        return store.presign(digest_of(data), 60)

    url = run(scenario)
    if isinstance(store, FilesystemBlobStore):
        assert url is None  # the registry serves its own signed URLs
        return
    assert url is not None
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200 and resp.content == data
    tampered = url.replace("Signature=", "Signature=0")
    assert requests.get(tampered, timeout=30).status_code == 403


# One request, a multipart upload; then both with the length declared: streamed requests.
@pytest.mark.parametrize(("size", "declared"), [(1000, False), (9 * MiB + 1, False),
                                                (0, True), (1000, True), (9 * MiB + 1, True)])
def test_direct_write_appears_only_when_verified(store: BlobStore, size: int,
                                                 declared: bool) -> None:
    data = os.urandom(size)
    length = size if declared else None

    async def failing() -> AsyncIterator[bytes]:
        yield data[: size // 2]
        raise ConnectionResetError("client went away")

    async def scenario() -> None:
        with pytest.raises(BlobUnverified):
            await store.write_blob(digest_of(data), chunks_of(data), lambda: False, length)
        assert await store.locate(digest_of(data)) is None
        if size:
            with pytest.raises(ConnectionResetError):
                await store.write_blob(digest_of(data), failing(), lambda: True, length)
            assert await store.locate(digest_of(data)) is None
        asked = []

        def verified() -> bool:
            asked.append(True)
            return True

        assert await store.write_blob(digest_of(data), chunks_of(data), verified,
                                      length) == size
        assert asked == [True]
        assert await collect(store.read(digest_of(data))) == data

    run(scenario)
    if isinstance(store, S3BlobStore):  # nothing left behind: no unfinished multipart upload
        pending = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert pending == []
