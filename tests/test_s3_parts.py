"""S3 reads as parallel ranged GETs, against a real SeaweedFS (the switch to parts is forced
with a `read_parallel_below` no store reaches): bytes come whole and in order, through a
Cargohold server with client ranges across part boundaries too; a reader closed midway (the
client went away) stops its parts and their connections; the per-process budget makes
further reads fall back to one GET; a blob whose bytes are gone still answers 404."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import requests
from ocihelpers import EXTERNAL
from seaweed import SeaweedS3

from cargohold.config import BlobStoreSettings
from cargohold.storage.s3 import S3BlobStore

MiB = 1024 * 1024
TIMEOUT = 60
FORCED = {"read_parallel_below": 1e9}  # MB/s: reads longer than 2 parts go on as parts


@pytest.fixture
def bucket(seaweed_s3: SeaweedS3) -> Iterator[str]:
    yield seaweed_s3.new_bucket()


class CountingProxy:
    """A TCP relay in front of SeaweedFS that counts GET requests and open connections, and
    can slow down what it sends back (so that no part finishes before the reader stops)."""

    def __init__(self, endpoint: str, delay: float = 0.0) -> None:
        self.upstream = urlsplit(endpoint)
        self.delay = delay
        self.gets = 0
        self.open = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     requests_: bool) -> None:
        try:
            while chunk := await reader.read(64 * 1024):
                if requests_:
                    self.gets += chunk.count(b"GET /")
                elif self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            reader, writer = await asyncio.open_connection(self.upstream.hostname,
                                                           self.upstream.port)
            await asyncio.gather(self._relay(client_reader, writer, True),
                                 self._relay(reader, client_writer, False),
                                 return_exceptions=True)
        finally:
            self.open -= 1

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


def store_for(seaweed: SeaweedS3, bucket: str, endpoint: str | None = None,
              **changes: object) -> S3BlobStore:
    settings = seaweed.blob_store_settings(bucket, **changes)
    if endpoint is not None:
        settings["endpoint_url"] = endpoint
    return S3BlobStore(BlobStoreSettings(**settings))


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def test_parts_deliver_every_byte_in_order(seaweed_s3: SeaweedS3, bucket: str) -> None:
    data = os.urandom(9 * MiB + 333)
    seaweed_s3.client().put_object(Bucket=bucket, Key="big", Body=data)

    async def scenario() -> None:
        proxy = CountingProxy(seaweed_s3.endpoint)
        store = store_for(seaweed_s3, bucket, await proxy.start(), read_part_size=MiB,
                          read_window=3, **FORCED)
        try:
            for start, end in ((0, len(data)), (5, len(data) - 7), (MiB - 1, 4 * MiB + 1),
                               (3 * MiB, 3 * MiB + 2)):
                gets = proxy.gets
                got = await collect(store.transfer.get("big", start, end))
                assert hashlib.sha256(got).digest() == hashlib.sha256(data[start:end]).digest()
                if end - start > 2 * MiB:
                    assert proxy.gets - gets > 1  # the open GET, then parts
            assert store.transfer.budget.used == 0
        finally:
            store.close()
            proxy.close()

    asyncio.run(scenario())


def test_a_reader_closed_midway_stops_its_parts(seaweed_s3: SeaweedS3, bucket: str) -> None:
    """As when a client goes away: closing the reader cancels the parts in flight and closes
    their connections; no task is left behind and the budget is given back."""
    data = os.urandom(24 * MiB)
    seaweed_s3.client().put_object(Bucket=bucket, Key="big", Body=data)

    async def scenario() -> None:
        proxy = CountingProxy(seaweed_s3.endpoint, delay=0.004)
        store = store_for(seaweed_s3, bucket, await proxy.start(), read_part_size=4 * MiB,
                          read_window=4, **FORCED)
        try:
            reader = store.transfer.get("big", 0, len(data))
            received = b""
            async for chunk in reader:
                received += chunk
                if store.transfer.budget.used:
                    break  # switched to parts
            for _ in range(500):  # the parts' requests are out (their bodies take a while)
                if proxy.gets >= 3:
                    break
                await asyncio.sleep(0.01)
            assert proxy.gets >= 3
            await reader.aclose()
            assert received == data[:len(received)]
            assert not [task for task in asyncio.all_tasks() if task is not
                        asyncio.current_task() and "Proxy" not in repr(task.get_coro())]
            assert store.transfer.budget.used == 0
            for _ in range(500):  # every connection carried an unfinished body: all closed
                if proxy.open == 0:
                    break
                await asyncio.sleep(0.01)
            assert proxy.open == 0
        finally:
            store.close()
            proxy.close()

    asyncio.run(scenario())


def test_reads_beyond_the_budget_use_one_get(seaweed_s3: SeaweedS3, bucket: str) -> None:
    """The budget holds one read's window: a second read meanwhile goes with a single GET,
    and a read after the first one ended gets parts again."""
    data = os.urandom(12 * MiB)
    seaweed_s3.client().put_object(Bucket=bucket, Key="big", Body=data)

    async def scenario() -> None:
        proxy = CountingProxy(seaweed_s3.endpoint)
        store = store_for(seaweed_s3, bucket, await proxy.start(), read_part_size=MiB,
                          read_window=4, read_budget=4 * MiB, **FORCED)
        budget = store.transfer.budget
        try:
            first = store.transfer.get("big", 0, len(data))
            received = b""
            async for chunk in first:
                received += chunk
                if budget.used:
                    break  # switched to parts: the whole budget is taken
            assert budget.used == 4 * MiB
            for _ in range(500):  # the head GET and the 4 parts it launched
                if proxy.gets >= 5:
                    break
                await asyncio.sleep(0.01)
            gets = proxy.gets
            assert gets == 5
            assert await collect(store.transfer.get("big", 1, len(data))) == data[1:]
            assert proxy.gets - gets == 1  # fell back to one GET
            assert budget.used == 4 * MiB
            received += await collect(first)
            assert received == data and budget.used == 0
            gets = proxy.gets
            assert await collect(store.transfer.get("big", 0, len(data))) == data
            assert proxy.gets - gets > 1
        finally:
            store.close()
            proxy.close()

    asyncio.run(scenario())


@pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")
def test_proxied_pulls_through_parts_and_ranges(make_registry, seaweed_s3: SeaweedS3,
                                                bucket: str) -> None:
    """A Cargohold node reading in 1 MiB parts: a large blob is byte-identical, client
    ranges across part boundaries are exact, and a blob whose object vanished is a 404."""
    server = make_registry(env=seaweed_s3.blob_store_env(
        bucket, read_part_size=MiB, read_window=3, **FORCED))
    data = os.urandom(21 * MiB + 5)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert requests.post(f"{server.url}/v2/s3/parts/blobs/uploads/?digest={digest}", data=data,
                         timeout=TIMEOUT).status_code == 201
    url = f"{server.url}/v2/s3/parts/blobs/{digest}"
    with requests.get(url, stream=True, timeout=TIMEOUT) as whole:
        assert whole.status_code == 200
        hashed = hashlib.sha256()
        for chunk in whole.iter_content(MiB):
            hashed.update(chunk)
        assert "sha256:" + hashed.hexdigest() == digest
    for first, last in ((MiB - 1, MiB), (MiB - 10, 5 * MiB + 10), (2 * MiB, 4 * MiB - 1),
                        (3, len(data) - 1), (len(data) - MiB - 1, len(data) - 1)):
        part = requests.get(url, headers={"Range": f"bytes={first}-{last}"}, timeout=TIMEOUT)
        assert part.status_code == 206, (first, last)
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
        assert part.content == data[first:last + 1], (first, last)
    client = seaweed_s3.client()
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])
    gone = requests.get(url, timeout=TIMEOUT)
    assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert requests.head(url, timeout=TIMEOUT).status_code == 404
