"""Upload bytes written past the page cache (storage/direct_writes.py): byte-exact at any
offset and chunking, bounded buffers, nothing still writing once a failed write returns, and
the same through a running server, with the setting on and off."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from cargohold.storage.direct_writes import (
    ALIGN,
    PER_REQUEST,
    STAGE,
    DirectWrites,
    write_staged,
)

TIMEOUT = 30


def direct_supported(directory: Path) -> bool:
    probe = directory / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_DIRECT))
        return True
    except OSError as exc:
        assert exc.errno == errno.EINVAL
        return False
    finally:
        probe.unlink()


async def pieces(data: bytes, rng: random.Random, fail_after: int | None = None,
                 ) -> AsyncIterator[bytes]:
    """`data` in pieces of random sizes, 1 byte to a little over a staging buffer."""
    position = 0
    while position < len(data):
        size = rng.choice((1, 7, ALIGN - 1, 65536, 300_001, STAGE + 13))
        yield data[position:position + size]
        position += size
        if fail_after is not None and position >= fail_after:
            raise ConnectionResetError("the client went away")


def write(path: Path, prefix: bytes, data: bytes, direct: DirectWrites, seed: int,
          fail_after: int | None = None) -> int:
    path.write_bytes(prefix)
    fd = os.open(path, os.O_WRONLY)
    try:
        buffers = direct.take()
        assert buffers is not None
        return asyncio.run(write_staged(fd, str(path), len(prefix),
                                        pieces(data, random.Random(seed), fail_after),
                                        direct, buffers))
    finally:
        os.close(fd)


@pytest.mark.parametrize("offset", [0, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 5, STAGE - 1])
@pytest.mark.parametrize("length", [1, ALIGN - 1, ALIGN + 1, STAGE, 3 * STAGE + 12345])
def test_bytes_land_exactly_at_any_offset(tmp_path: Path, offset: int, length: int) -> None:
    rng = random.Random(offset * 31 + length)
    prefix, data = rng.randbytes(offset), rng.randbytes(length)
    direct = DirectWrites()
    path = tmp_path / "upload"
    end = write(path, prefix, data, direct, seed=length)
    assert end == offset + length
    assert path.read_bytes() == prefix + data
    # Whole blocks of a large write went past the page cache, the edges through it.
    aligned = max(0, length + offset % ALIGN - ALIGN if offset % ALIGN else length)
    if direct_supported(tmp_path):
        assert direct.direct_bytes >= aligned // STAGE * STAGE
        assert direct.direct_bytes <= aligned - aligned % ALIGN
    else:
        assert direct.direct_bytes == 0


def test_a_failed_write_leaves_nothing_writing(tmp_path: Path) -> None:
    """The caller truncates right after the error: no buffer of the failed write may land
    later and extend the file again. The loop's one thread is held busy for a moment, so the
    failed write's buffers are still queued when the body fails."""
    data = random.Random(5).randbytes(6 * STAGE)
    path = tmp_path / "upload"
    direct = DirectWrites()

    async def fail_then_truncate(fail_after: int) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        busy = threading.Event()
        loop.run_in_executor(None, busy.wait, 5)
        loop.call_later(0.2, busy.set)
        path.write_bytes(b"x" * 100)
        fd = os.open(path, os.O_WRONLY)
        try:
            buffers = direct.take()
            assert buffers is not None
            with pytest.raises(ConnectionResetError):
                await write_staged(fd, str(path), 100,
                                   pieces(data, random.Random(fail_after), fail_after),
                                   direct, buffers)
            os.ftruncate(fd, 100)
            await asyncio.sleep(0.4)
        finally:
            os.close(fd)
        assert path.read_bytes() == b"x" * 100

    for fail_after in (STAGE, 2 * STAGE + 1, 4 * STAGE):
        asyncio.run(fail_then_truncate(fail_after))
    assert direct.take() is not None  # the failed writes gave their buffers back


def test_a_cancelled_write_waits_for_its_buffer_in_flight(tmp_path: Path) -> None:
    """Cancelled while it waits for its first buffer's thread, or while it waits for the
    next bytes (a server shutting down): it still returns only once its buffers landed."""
    path = tmp_path / "upload"
    direct = DirectWrites()

    async def cancelled_mid_write(while_sending: bool) -> None:
        async def body() -> AsyncIterator[bytes]:
            task = asyncio.current_task()
            assert task is not None
            if while_sending:  # at the wait for the first buffer, once the second is full
                asyncio.get_running_loop().call_soon(task.cancel)
                yield bytes(3 * STAGE)
            yield bytes(2 * STAGE)  # the second buffer is in flight once this is written
            task.cancel()
            await asyncio.sleep(10)
            yield b"never"

        path.write_bytes(b"")
        fd = os.open(path, os.O_WRONLY)
        try:
            buffers = direct.take()
            assert buffers is not None
            writing = asyncio.ensure_future(
                write_staged(fd, str(path), 0, body(), direct, buffers))
            with pytest.raises(asyncio.CancelledError):
                await writing
            os.ftruncate(fd, 0)
            await asyncio.sleep(0.1)
        finally:
            os.close(fd)
        assert path.stat().st_size == 0

    for while_sending in (True, False, True, False):
        asyncio.run(cancelled_mid_write(while_sending))


def test_staging_buffers_are_bounded_and_reused() -> None:
    direct = DirectWrites(max_buffers=2 * PER_REQUEST, kept=PER_REQUEST)
    first, second = direct.take(), direct.take()
    assert first is not None and second is not None
    assert direct.take() is None  # a third request writes through the page cache
    direct.give(first)
    again = direct.take()
    assert again is not None and set(map(id, again)) == set(map(id, first))
    assert len(again) == PER_REQUEST and all(len(buffer) == STAGE for buffer in again)
    assert DirectWrites(enabled=False).take() is None


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("direct_writes", ["true", "false"])
def test_large_uploads_through_a_server(make_registry: Any, direct_writes: str) -> None:
    """Chunked PATCHes at unaligned offsets, a streamed body of unknown length and a
    monolithic PUT, all above a staging buffer, pulled back byte for byte."""
    server = make_registry(env={"CARGOHOLD_BLOB_STORE__DIRECT_WRITES": direct_writes})
    base, repo = server.url, "direct/writes"
    rng = random.Random(direct_writes)
    with requests.Session() as session:
        patched = rng.randbytes(3 * STAGE + 4097 + STAGE + 511)
        post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
        url = base + post.headers["Location"]
        start = 0
        for length in (STAGE + 4097, 2 * STAGE - 3, STAGE + 514):
            piece = patched[start:start + length]
            patch = session.patch(url, data=piece, timeout=TIMEOUT, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(piece) - 1}"})
            assert patch.status_code == 202, patch.text
            url = base + patch.headers["Location"]
            start += len(piece)
        assert start == len(patched)
        put = session.put(url, params={"digest": sha256(patched)}, timeout=TIMEOUT)
        assert put.status_code == 201, put.text

        streamed = rng.randbytes(5 * STAGE + 77)
        post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
        put = session.put(base + post.headers["Location"], params={"digest": sha256(streamed)},
                          data=iter([streamed[:STAGE + 1], streamed[STAGE + 1:]]),
                          timeout=TIMEOUT, headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, put.text  # chunked transfer encoding: no length

        whole = rng.randbytes(4 * STAGE)
        post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
        put = session.put(base + post.headers["Location"], params={"digest": sha256(whole)},
                          data=whole, timeout=TIMEOUT,
                          headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, put.text

        for blob in (patched, streamed, whole):
            got = session.get(f"{base}/v2/{repo}/blobs/{sha256(blob)}", timeout=TIMEOUT)
            assert got.status_code == 200 and got.content == blob

        wrong = rng.randbytes(3 * STAGE)
        post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
        put = session.put(base + post.headers["Location"], params={"digest": sha256(b"other")},
                          data=wrong, timeout=TIMEOUT,
                          headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 400 and put.json()["errors"][0]["code"] == "DIGEST_INVALID"
        head = session.head(f"{base}/v2/{repo}/blobs/{sha256(wrong)}", timeout=TIMEOUT)
        assert head.status_code == 404
