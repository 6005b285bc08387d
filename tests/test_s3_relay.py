"""Proxied pulls from S3 that the kernel relays (storage/s3_raw.py, http/splice.py), on a node
whose store is reached through a recording proxy in front of SeaweedFS: a large body or range
takes the raw path and arrives whole; a store connection cut midway is resumed from the byte
where it stopped; a blob gone from the bucket is still answered BLOB_UNKNOWN; clients that
leave midway leak nothing. Against canned store answers on a loopback socket: anything but
exactly the range asked for, with its length, is left to the ordinary path."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from ocihelpers import EXTERNAL, random_bytes, sha256
from processhelpers import threads_and_fds
from seaweed import SeaweedS3

from cargohold.storage.s3_raw import open_raw

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")
TIMEOUT = 60
MiB = 1024 * 1024
EXECUTOR_SLACK, FD_SLACK = 4, 3  # lazily grown pools: see test_upstreams_first_pull.py


class RecordingProxy:
    """TCP proxy to the store, on a loop of its own. It records the first request head of
    every connection; `cut_after` bytes into the first raw GET's answer (no aiohttp
    User-Agent, a Range header), that connection is cut once."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.heads: list[str] = []
        self.cut_after: int | None = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        ready.set()
        self.loop.run_forever()

    def raw_gets(self) -> list[str]:
        return [head for head in self.heads
                if head.startswith("GET ") and "aiohttp" not in head and "range:" in head.lower()]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        text = head.decode("latin-1")
        self.heads.append(text)
        limit = None
        if self.cut_after is not None and text in self.raw_gets():
            limit, self.cut_after = self.cut_after, None
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        up_writer.write(head)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, None),
                                 self._pipe(up_reader, writer, limit), return_exceptions=True)
        except asyncio.CancelledError:  # the proxy closes: end quietly (asyncio logs else)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    limit: int | None) -> None:
        sent = 0
        try:
            while chunk := await reader.read(64 * 1024):
                if limit is not None and sent + len(chunk) > limit:
                    writer.write(chunk[:limit - sent])
                    await writer.drain()
                    break
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        finally:
            writer.transport.abort()

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def proxy(seaweed_s3: SeaweedS3) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(seaweed_s3.endpoint)
    yield recording
    recording.close()


@pytest.fixture
def node(make_registry, seaweed_s3: SeaweedS3, proxy: RecordingProxy):
    bucket = seaweed_s3.new_bucket()
    env = seaweed_s3.blob_store_env(bucket)
    env["CARGOHOLD_BLOB_STORE__ENDPOINT_URL"] = proxy.url
    server = make_registry(env=env)
    server.bucket = bucket
    return server


def push(url: str, repo: str, data: bytes) -> str:
    digest = sha256(data)
    answer = requests.post(f"{url}/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                           timeout=TIMEOUT)
    assert answer.status_code == 201, answer.text
    return digest


def test_large_bodies_and_ranges_are_relayed_raw_and_resumed(node, proxy: RecordingProxy) -> None:
    data = random_bytes(12 * MiB + 5)
    url = f"{node.url}/v2/relay/app/blobs/{push(node.url, 'relay/app', data)}"
    before = len(proxy.raw_gets())
    session = requests.Session()  # one keep-alive connection: it goes on after a relayed body
    whole = session.get(url, timeout=TIMEOUT)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Length"] == str(len(data))
    raw = proxy.raw_gets()[before:]
    assert len(raw) == 1 and f"bytes=0-{len(data) - 1}" in raw[0]

    ranged = session.get(url, headers={"Range": "bytes=1000-5243879"}, timeout=TIMEOUT)
    assert ranged.status_code == 206 and ranged.content == data[1000:5243880]
    assert ranged.headers["Content-Range"] == f"bytes 1000-5243879/{len(data)}"
    assert "bytes=1000-5243879" in proxy.raw_gets()[-1]

    small = len(proxy.raw_gets())
    tail = session.get(url, headers={"Range": "bytes=-4096"}, timeout=TIMEOUT)
    assert tail.status_code == 206 and tail.content == data[-4096:]
    assert len(proxy.raw_gets()) == small  # a small body stays on the event loop's path

    proxy.cut_after = 3 * MiB  # the next raw GET's connection dies 3 MiB in (headers count)
    before = len(proxy.raw_gets())
    resumed = session.get(url, timeout=TIMEOUT)
    assert resumed.status_code == 200 and resumed.content == data
    raw = proxy.raw_gets()[before:]
    assert len(raw) == 2, raw
    resumed_at = int(raw[1].lower().split("range: bytes=")[1].split("-")[0])
    assert 2 * MiB < resumed_at < 3 * MiB  # from where it stopped, not from the start
    # Every answer, relayed or not, left the connection fit for the next request.
    assert resumed.raw._pool.num_connections == 1  # urllib3's pool behind the session


def test_a_blob_gone_from_the_bucket_is_still_blob_unknown(node, proxy: RecordingProxy,
                                                           seaweed_s3: SeaweedS3) -> None:
    data = random_bytes(2 * MiB)
    digest = push(node.url, "relay/gone", data)
    key = f"blobs/sha256/{digest[7:9]}/{digest[7:]}"
    seaweed_s3.client().delete_object(Bucket=node.bucket, Key=key)
    before = len(proxy.raw_gets())
    answer = requests.get(f"{node.url}/v2/relay/gone/blobs/{digest}", timeout=TIMEOUT)
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert len(proxy.raw_gets()) == before + 1  # tried raw, then answered by the usual path


def test_clients_that_leave_midway_leak_nothing(node) -> None:
    data = random_bytes(48 * MiB)
    url = f"{node.url}/v2/relay/leave/blobs/{push(node.url, 'relay/leave', data)}"

    def leave_midway() -> None:
        with requests.get(url, stream=True, timeout=TIMEOUT) as answer:
            assert answer.status_code == 200
            assert answer.raw.read(MiB) == data[:MiB]

    leave_midway()
    time.sleep(1)
    baseline = threads_and_fds(node.proc.pid)
    for _ in range(6):
        leave_midway()
    assert requests.get(url, timeout=TIMEOUT).content == data
    deadline = time.monotonic() + 90
    while True:
        now = threads_and_fds(node.proc.pid)
        if now[0] <= baseline[0] + EXECUTOR_SLACK and now[1] <= baseline[1] + FD_SLACK:
            break
        assert time.monotonic() < deadline, (baseline, now)
        time.sleep(0.3)


def canned_store(answer: bytes) -> tuple[str, threading.Thread, list[bytes]]:
    """A one-connection HTTP server on loopback that answers `answer` to one request."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests_seen: list[bytes] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                requests_seen.append(head)
                conn.sendall(answer)
                time.sleep(0.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/b/k?X-Amz-Signature=s", thread, \
        requests_seen


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",  # the Range ignored
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/10\r\nContent-Length: 5\r\n\r\n"
    b"01234",  # other bytes than asked
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-5/10\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n4\r\n2345\r\n0\r\n\r\n",  # no length
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-5/*\r\nContent-Length: 9\r\n\r\n",
    b"garbage\r\n\r\n",
], ids=["200", "other-range", "chunked", "404", "length-mismatch", "not-http"])
def test_a_store_answer_other_than_the_exact_range_is_not_relayed(answer: bytes) -> None:
    url, thread, seen = canned_store(answer)
    assert open_raw(url, 2, 6, 5.0) is None
    thread.join(5)
    assert seen and seen[0].startswith(b"GET /b/k?X-Amz-Signature=s HTTP/1.1\r\n")
    assert b"Range: bytes=2-5\r\n" in seen[0]


def test_the_exact_range_is_opened_with_the_bytes_that_came_with_its_header() -> None:
    url, thread, _ = canned_store(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-9/10"
                                  b"\r\nContent-Length: 8\r\n\r\n234")
    body = open_raw(url, 2, 10, 5.0)
    assert body is not None
    try:
        assert (body.head, body.remaining) == (b"234", 5)
    finally:
        body.close()
    thread.join(5)
