"""kill -9 in the middle of many concurrent small pushes (the write fast path): every blob and
every tag whose PUT was answered 201 before the kill is there, byte for byte, after a restart.

Sixteen clients push small blobs and tag a manifest for each against a two-worker server; the
server's whole process group is killed with SIGKILL once enough pushes were acknowledged (a
count, not a time), while the others are still in flight.
"""

from __future__ import annotations

import hashlib
import json
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

CLIENTS = 16
PUSHES_PER_CLIENT = 60
KILL_AFTER_ACKS = 240
TIMEOUT = 10
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b"{}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_for(layer: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer), "size": len(layer)}],
    }).encode()


def push_blob(session: requests.Session, base: str, repo: str, data: bytes) -> bool:
    """POST + monolithic PUT; True when the server answered 201."""
    post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT,
                        headers={"Content-Length": "0"})
    if post.status_code != 202:
        return False
    location = post.headers["Location"]
    url = location if location.startswith("http") else base + location
    put = session.put(url, params={"digest": sha256(data)}, data=data, timeout=TIMEOUT,
                      headers={"Content-Type": "application/octet-stream"})
    return put.status_code == 201


def test_acknowledged_small_pushes_survive_kill_9(make_registry: Any) -> None:
    server = make_registry(["--workers", "2"])
    base, repo = server.url, "crash/fastpath"
    with requests.Session() as setup:
        assert push_blob(setup, base, repo, CONFIG)
    acknowledged_blobs: dict[str, bytes] = {}
    acknowledged_tags: dict[str, str] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def client(index: int) -> None:
        with requests.Session() as session:
            for n in range(PUSHES_PER_CLIENT):
                layer = os.urandom(512) + f"{index}-{n}".encode()
                try:
                    if not push_blob(session, base, repo, layer):
                        return
                    with lock:
                        acknowledged_blobs[sha256(layer)] = layer
                    manifest = manifest_for(layer)
                    tag = f"c{index}-{n}"
                    put = session.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest,
                                      headers={"Content-Type": OCI_MANIFEST}, timeout=TIMEOUT)
                except requests.RequestException:
                    return  # the server is gone: what was acknowledged is recorded
                if put.status_code != 201:
                    return
                with lock:
                    acknowledged_tags[tag] = sha256(manifest)
                    if len(acknowledged_blobs) + len(acknowledged_tags) >= KILL_AFTER_ACKS:
                        enough.set()

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, i) for i in range(CLIENTS)]
        enough.wait(timeout=120)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)  # every worker at once, mid-flight
        for future in futures:
            future.result()
    assert enough.is_set(), f"only {len(acknowledged_blobs)} blobs acknowledged:\n{server.log()}"
    server.proc.wait()
    server.proc = None
    server.start()

    with requests.Session() as check:
        for digest, data in acknowledged_blobs.items():
            got = check.get(f"{base}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
            assert got.status_code == 200 and got.content == data, (digest, got.status_code)
        for tag, digest in acknowledged_tags.items():
            got = check.get(f"{base}/v2/{repo}/manifests/{tag}", timeout=TIMEOUT,
                            headers={"Accept": OCI_MANIFEST})
            assert got.status_code == 200, (tag, got.status_code)
            assert sha256(got.content) == digest, tag
        listed = check.get(f"{base}/v2/{repo}/tags/list", timeout=TIMEOUT).json()["tags"]
    assert set(acknowledged_tags) <= set(listed)
