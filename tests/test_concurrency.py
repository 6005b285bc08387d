"""Concurrency and crash safety of a real Cargohold server (several workers, kill -9)."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from ocihelpers import (
    EXTERNAL,
    assert_blob,
    build_image,
    location_of,
    open_upload,
    push,
    random_bytes,
    sha256,
)

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs" / "blobs").rglob("*") if p.is_file()]


def monolithic_push(base: str, repo: str, data: bytes) -> int:
    url = open_upload(base, repo)
    sep = "&" if "?" in url else "?"
    return requests.put(f"{url}{sep}digest={sha256(data)}", data=data, timeout=60,
                        headers={"Content-Type": "application/octet-stream"}).status_code


def test_same_blob_pushed_at_once_is_stored_once(make_registry) -> None:
    server = make_registry(["--workers", "2"])
    data = random_bytes(3 * 1024 * 1024)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: monolithic_push(server.url, f"race/r{i % 3}", data),
                                 range(8)))
    assert statuses == [201] * 8
    for index in range(3):
        assert_blob(server.url, f"race/r{index}", sha256(data), data)
    stored = [p for p in blob_files(server.data_dir) if p.name == sha256(data).split(":")[1]]
    assert len(stored) == 1
    assert not list((server.data_dir / "blobs" / "uploads").iterdir())


def test_chunks_spread_over_workers_hash_correctly(make_registry) -> None:
    server = make_registry(["--workers", "2"])
    data = random_bytes(5 * 1024 * 1024 + 17)
    url = open_upload(server.url, "spread/chunks")
    chunk = 512 * 1024
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk]
        # A fresh connection per chunk: the kernel spreads them over both workers.
        resp = requests.patch(url, data=part, timeout=60, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(part) - 1}",
            "Connection": "close"})
        assert resp.status_code == 202, resp.text
        url = location_of(server.url, resp)
    sep = "&" if "?" in url else "?"
    done = requests.put(f"{url}{sep}digest={sha256(data)}", timeout=60)
    assert done.status_code == 201, done.text
    assert_blob(server.url, "spread/chunks", sha256(data), data)


def test_tag_moves_are_atomic_for_readers(make_registry) -> None:
    server = make_registry(["--workers", "2"])
    first = push(server.url, "atomic/tag", build_image(server.url, "atomic/tag"), "live")
    second = push(server.url, "atomic/tag", build_image(server.url, "atomic/tag"), "other")
    expected = {first.digest: first.body, second.digest: second.body}
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        session = requests.Session()
        while not stop.is_set():
            resp = session.get(f"{server.url}/v2/atomic/tag/manifests/live", timeout=30,
                               headers={"Accept": first.media_type})
            digest = resp.headers.get("Docker-Content-Digest", "")
            if resp.status_code != 200 or expected.get(digest) != resp.content:
                problems.append(f"{resp.status_code} {digest}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for index in range(60):
            manifest = second if index % 2 == 0 else first
            resp = requests.put(f"{server.url}/v2/atomic/tag/manifests/live", data=manifest.body,
                                headers={"Content-Type": manifest.media_type}, timeout=30)
            assert resp.status_code == 201
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    assert problems == []


def _start_big_upload(host: str, port: int, path: str, total: int) -> http.client.HTTPConnection:
    """Begin a PATCH that claims `total` bytes and send only half of them."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("PATCH", path)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(total))
    conn.putheader("Content-Range", f"0-{total - 1}")
    conn.endheaders()
    conn.send(os.urandom(total // 2))
    return conn


def test_kill_9_mid_upload_leaves_no_partial_blob(make_registry) -> None:
    server = make_registry()
    kept = push(server.url, "crash/repo", build_image(server.url, "crash/repo"), "kept")
    url = open_upload(server.url, "crash/repo")
    path = url.split(server.host, 1)[1]
    conn = _start_big_upload("127.0.0.1", server.port, path, 8 * 1024 * 1024)
    time.sleep(0.5)
    server.stop(signal.SIGKILL)
    conn.close()
    server.start()
    before = {p.name for p in blob_files(server.data_dir)}
    assert all(len(name) in (64, 128) for name in before)
    # Everything committed before the crash is intact.
    resp = requests.get(f"{server.url}/v2/crash/repo/manifests/kept", timeout=30,
                        headers={"Accept": kept.media_type})
    assert resp.status_code == 200 and resp.content == kept.body
    for digest, data in kept.blobs.items():
        assert_blob(server.url, "crash/repo", digest, data)
    # The interrupted chunk did not count: the session resumes from a consistent offset.
    status = requests.get(url, timeout=30)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-0"
    data = random_bytes(1024)
    resp = requests.put(f"{url}{'&' if '?' in url else '?'}digest={sha256(data)}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert resp.status_code == 201, resp.text
    assert_blob(server.url, "crash/repo", sha256(data), data)


def test_digest_mismatch_stores_nothing(make_registry) -> None:
    server = make_registry()
    data = random_bytes(4096)
    url = open_upload(server.url, "verify/repo")
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    resp = requests.put(f"{url}{'&' if '?' in url else '?'}digest={wrong}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert blob_files(server.data_dir) == []
    assert requests.head(f"{server.url}/v2/verify/repo/blobs/{wrong}", timeout=30
                         ).status_code == 404
    assert requests.get(url, timeout=30).status_code == 404
