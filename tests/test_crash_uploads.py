"""kill -9 in the middle of concurrent uploads of every shape the write fast path serves:
single-request `POST ?digest=` uploads, monolithic PUTs of blobs large enough to be hashed on a
thread while they stream in (and written past the page cache, storage/direct_writes.py), and
chunked uploads whose PATCHes are acknowledged in transactions run on the event loop: small
ones through the page cache, large ones at unaligned offsets partly past it.

After a restart, every blob answered 201 is there byte for byte, and every chunked upload
resumes from where the server says it stands, at least where the last 202 said, and completes
to the right digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
    reason="crash tests start and kill their own Cargohold server",
)

TIMEOUT = 30
REPO = "crash/uploads"
KILL_AFTER = 60  # acknowledged requests (a count, not a time)
CHUNK = 1 << 20
BIG = 3 * CHUNK + 12345  # above the size hashed on a thread (1 MiB batches)
# Above a staging buffer (1 MiB), and odd: each PATCH after the first starts mid-block.
LARGE_PIECES = (3 * CHUNK + 4097, 5 * CHUNK - 1, 2 * CHUNK + 511)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def absolute(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


class Ledger:
    """What the server acknowledged before the kill."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}
        # upload URL: (blob, acknowledged, where the PATCH in flight would end)
        self.chunked: dict[str, tuple[bytes, int, int]] = {}
        self.acks = 0
        self.enough = threading.Event()

    def stored(self, data: bytes) -> None:
        """A blob the server answered 201 for."""
        with self.lock:
            self.blobs[sha256(data)] = data
        self.ack()

    def ack(self) -> None:
        with self.lock:
            self.acks += 1
            # Kill only once a chunked upload has an acknowledged chunk in flight too: the small
            # uploads alone can reach KILL_AFTER before the chunked clients are under way.
            if self.acks >= KILL_AFTER and any(done for _, done, _ in self.chunked.values()):
                self.enough.set()


def single_posts(session: requests.Session, base: str, ledger: Ledger, index: int) -> None:
    for n in range(1000):
        data = os.urandom(700) + f"post-{index}-{n}".encode()
        answer = session.post(f"{base}/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)},
                              data=data, timeout=TIMEOUT,
                              headers={"Content-Type": "application/octet-stream"})
        if answer.status_code != 201:
            return
        ledger.stored(data)


def big_puts(session: requests.Session, base: str, ledger: Ledger, index: int) -> None:
    for n in range(1000):
        data = os.urandom(BIG) + f"big-{index}-{n}".encode()
        post = session.post(f"{base}/v2/{REPO}/blobs/uploads/", timeout=TIMEOUT)
        if post.status_code != 202:
            return
        put = session.put(absolute(base, post.headers["Location"]),
                          params={"digest": sha256(data)}, data=data, timeout=TIMEOUT,
                          headers={"Content-Type": "application/octet-stream"})
        if put.status_code != 201:
            return
        ledger.stored(data)


def chunked(session: requests.Session, base: str, ledger: Ledger, index: int) -> None:
    previous = None
    for n in range(1000):
        data = os.urandom(4 * CHUNK) + f"chunked-{index}-{n}".encode()
        pieces = [CHUNK] * (len(data) // CHUNK + 1)
        previous = patched_upload(session, base, ledger, data, pieces, previous)
        if previous is None:
            return


def large_chunked(session: requests.Session, base: str, ledger: Ledger, index: int) -> None:
    previous = None
    for n in range(1000):
        data = os.urandom(sum(LARGE_PIECES) - 40) + f"large-{index}-{n:08}".encode()
        previous = patched_upload(session, base, ledger, data, list(LARGE_PIECES), previous)
        if previous is None:
            return


def patched_upload(session: requests.Session, base: str, ledger: Ledger, data: bytes,
                   pieces: list[int], previous: str | None) -> str | None:
    """POST, a PATCH per piece length (the last one cut to what is left), PUT ?digest=; the
    upload's key, or None once the server stops answering. A completed upload stays in the
    ledger until the client's next one is under way (a client between two uploads has one
    there too: the check after the kill then finds it complete)."""
    post = session.post(f"{base}/v2/{REPO}/blobs/uploads/", timeout=TIMEOUT)
    if post.status_code != 202:
        return None
    url = absolute(base, post.headers["Location"])
    upload = post.headers["Docker-Upload-UUID"]
    key = f"{base}/v2/{REPO}/blobs/uploads/{upload}"
    start = 0
    for length in pieces:
        if start >= len(data):
            break
        piece = data[start:start + length]
        with ledger.lock:
            ledger.chunked[key] = (data, start, start + len(piece))
            ledger.chunked.pop(previous or "", None)
        patch = session.patch(url, data=piece, timeout=TIMEOUT, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(piece) - 1}"})
        if patch.status_code != 202:
            return None
        url = absolute(base, patch.headers["Location"])
        start += len(piece)
        with ledger.lock:
            ledger.chunked[key] = (data, start, start)
        ledger.ack()
    put = session.put(url, params={"digest": sha256(data)}, timeout=TIMEOUT)
    if put.status_code != 201:
        return None
    ledger.stored(data)
    return key


def test_acknowledged_uploads_survive_kill_9(make_registry: Any) -> None:
    server = make_registry(["--workers", "2"])
    base = server.url
    ledger = Ledger()

    def client(shape: Any, index: int) -> None:
        # When the server is gone, what was acknowledged is recorded.
        with requests.Session() as session, contextlib.suppress(requests.RequestException):
            shape(session, base, ledger, index)

    shapes = [single_posts] * 4 + [big_puts] * 3 + [chunked] * 2 + [large_chunked] * 2
    with ThreadPoolExecutor(max_workers=len(shapes)) as pool:
        futures = [pool.submit(client, shape, i) for i, shape in enumerate(shapes)]
        ledger.enough.wait(timeout=180)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)  # every worker at once, mid-flight
        for future in futures:
            future.result()
    assert ledger.enough.is_set(), f"only {ledger.acks} acknowledged:\n{server.log()}"
    server.proc.wait()
    server.proc = None
    server.start()

    with requests.Session() as check:
        for digest, data in ledger.blobs.items():
            got = check.get(f"{base}/v2/{REPO}/blobs/{digest}", timeout=TIMEOUT)
            assert got.status_code == 200 and got.content == data, (digest, got.status_code)
        assert ledger.chunked, "no chunked upload was under way at the kill"
        for url, (data, acknowledged, in_flight_end) in ledger.chunked.items():
            status = check.get(url, timeout=TIMEOUT)
            blob_url = f"{base}/v2/{REPO}/blobs/{sha256(data)}"
            if status.status_code == 404 and acknowledged == len(data):
                # Completed, or the new state of an unanswered final PUT: the blob is linked.
                got = check.get(blob_url, timeout=TIMEOUT)
                assert got.status_code == 200 and got.content == data, (url, got.status_code)
                continue
            assert status.status_code == 204, (url, status.status_code)
            end = int(status.headers["Range"].split("-")[1])
            offset = end + 1 if acknowledged or end > 0 else 0
            # The old state or the new one: an unanswered PATCH may have been recorded.
            assert offset in (acknowledged, in_flight_end), (url, offset, acknowledged)
            rest = data[offset:]
            put = check.put(url, params={"digest": sha256(data)}, data=rest, timeout=TIMEOUT,
                            headers={"Content-Type": "application/octet-stream",
                                     **({"Content-Range": f"{offset}-{len(data) - 1}"}
                                        if rest else {})})
            assert put.status_code == 201, (url, put.status_code, put.text)
            got = check.get(blob_url, timeout=TIMEOUT)
            assert got.status_code == 200 and got.content == data
