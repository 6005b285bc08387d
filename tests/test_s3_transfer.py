"""The S3 data path (aiohttp with locally presigned requests) against a real SeaweedFS: S3's
refusals come back as botocore's ClientError with S3's code, as the botocore calls raise them,
and a read resumes where a dropped connection left it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from seaweed import SeaweedS3

from cargohold.config import BlobStoreSettings
from cargohold.storage.s3 import S3BlobStore

MiB = 1024 * 1024


@pytest.fixture
def bucket(seaweed_s3: SeaweedS3) -> Iterator[str]:
    yield seaweed_s3.new_bucket()


def store_for(seaweed: SeaweedS3, bucket: str, **changes: str) -> S3BlobStore:
    return S3BlobStore(BlobStoreSettings(**{**seaweed.blob_store_settings(bucket), **changes}))


def error_of(call: object) -> ClientError:
    async def attempt() -> None:
        await call()  # type: ignore[operator]

    with pytest.raises(ClientError) as info:
        asyncio.run(attempt())
    return info.value


def test_missing_objects_and_wrong_credentials_raise_client_errors(
        seaweed_s3: SeaweedS3, bucket: str) -> None:
    store = store_for(seaweed_s3, bucket)
    digest = "sha256:" + "ab" * 32

    async def read() -> None:
        async for _ in store.transfer.get(store.blob_key(digest), 0, None):
            pass

    missing = error_of(read)
    assert missing.response["Error"]["Code"] == "NoSuchKey"
    assert missing.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert missing.operation_name == "GetObject"
    assert asyncio.run(store.locate(digest)) is None  # a HEAD's 404 means absent
    store.close()

    wrong = store_for(seaweed_s3, bucket, secret_access_key="not-the-secret")
    refused = error_of(lambda: wrong.locate(digest))
    assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    refused = error_of(lambda: wrong.transfer.put("probe", b"data", 4))
    assert refused.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert refused.operation_name == "PutObject"
    wrong.close()
    listed = seaweed_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert listed == 0  # nothing was written by the refused requests


def test_a_read_resumes_after_a_dropped_connection(seaweed_s3: SeaweedS3, bucket: str) -> None:
    """A proxy between the store and SeaweedFS cuts the first connection 2 MiB into a GET's
    body: the read goes on from the byte where it stopped (a Range request), and the bytes
    come out whole and in order."""
    data = os.urandom(12 * MiB + 5)
    seaweed_s3.client().put_object(Bucket=bucket, Key="big", Body=data)
    upstream = urlsplit(seaweed_s3.endpoint)
    connections: list[int] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    limit: int | None) -> None:
        sent = 0
        try:
            while chunk := await reader.read(64 * 1024):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                if limit is not None and sent > limit:
                    break
        finally:
            writer.transport.abort()

    async def serve(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        limit = 2 * MiB if len(connections) == 1 else None
        reader, writer = await asyncio.open_connection(upstream.hostname, upstream.port)
        await asyncio.gather(relay(client_reader, writer, None),
                             relay(reader, client_writer, limit), return_exceptions=True)

    async def scenario() -> bytes:
        proxy = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        store = store_for(seaweed_s3, bucket, endpoint_url=f"http://127.0.0.1:{port}")
        try:
            return b"".join([chunk async for chunk in store.transfer.get("big", 3, None)])
        finally:
            store.close()
            proxy.close()

    assert asyncio.run(scenario()) == data[3:]
    assert len(connections) == 2  # the cut one, and the one that resumed
