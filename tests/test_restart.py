"""Durability across a server restart (graceful SIGTERM and hard SIGKILL).

Before the restart: an image is pushed (config + layers, manifest under two tags, a second
manifest by digest only) and a chunked upload is begun (POST + one PATCH).  After it:
everything pushed is served byte for byte, and the upload session can be resumed where it
stopped, completed with 201, and the blob pulled.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from clienthelpers import (
    HTTP_TIMEOUT,
    OCI_MANIFEST,
    Image,
    absolute_location,
    build_image,
    describe,
    get_blob,
    get_manifest,
    list_tags,
    push_image,
    sha256_digest,
    with_query,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
    reason="restart tests start and kill their own Cargohold server",
)


def server_log(server: Any) -> str:
    return f"\n--- server log ({server.log_path}) ---\n{server.log()[-6000:]}"


def begin_chunked_upload(base_url: str, repo: str, first: bytes) -> str:
    """POST + one PATCH; returns the upload URL to continue with."""
    post = requests.post(f"{base_url}/v2/{repo}/blobs/uploads/",
                         headers={"Content-Length": "0"}, timeout=HTTP_TIMEOUT)
    assert post.status_code == 202, describe(post)
    location = absolute_location(base_url, post)
    patch = requests.patch(location, data=first, timeout=HTTP_TIMEOUT, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"0-{len(first) - 1}",
        "Content-Length": str(len(first)),
    })
    assert patch.status_code == 202, describe(patch)
    assert patch.headers.get("Range") == f"0-{len(first) - 1}", describe(patch)
    return absolute_location(base_url, patch)


def assert_image_intact(base_url: str, repo: str, image: Image, tags: list[str]) -> None:
    for ref in (*tags, image.manifest_digest):
        resp = get_manifest(base_url, repo, ref)
        assert resp.status_code == 200, describe(resp)
        assert resp.content == image.manifest, f"manifest {ref} changed"
        assert resp.headers.get("Docker-Content-Digest") == image.manifest_digest
        assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_MANIFEST
    for digest, data in image.blobs.items():
        resp = get_blob(base_url, repo, digest)
        assert resp.status_code == 200, describe(resp)
        assert sha256_digest(resp.content) == digest
        assert resp.content == data
        head = requests.head(f"{base_url}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert head.status_code == 200, describe(head)
        assert head.headers.get("Content-Length") == str(len(data)), describe(head)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_restart_keeps_content_and_upload_sessions(make_registry: Callable[..., Any],
                                                   sig: signal.Signals) -> None:
    server = make_registry()
    base = server.url
    repo = f"test/restart-{uuid.uuid4().hex[:10]}"
    nonce = uuid.uuid4().hex
    image = build_image("amd64", nonce=nonce)
    untagged = build_image("arm64", nonce=nonce)
    tags = ["v1", "stable"]
    push_image(base, repo, image, *tags)
    push_image(base, repo, untagged)  # by digest only

    payload = os.urandom(256 * 1024 + 123)
    split = 100_000
    upload_url = begin_chunked_upload(base, repo, payload[:split])

    server.restart(sig)

    try:
        assert_image_intact(base, repo, image, tags)
        assert_image_intact(base, repo, untagged, [])
        resp = list_tags(base, repo)
        assert resp.status_code == 200, describe(resp)
        assert resp.json() == {"name": repo, "tags": sorted(tags)}

        # The upload session survived: its status still reports the bytes received so far.
        status = requests.get(upload_url, timeout=HTTP_TIMEOUT)
        assert status.status_code == 204, describe(status)
        assert status.headers.get("Range") == f"0-{split - 1}", describe(status)
        upload_url = absolute_location(base, status)

        # Continue with the rest, then close it.
        rest = payload[split:]
        patch = requests.patch(upload_url, data=rest, timeout=HTTP_TIMEOUT, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{split}-{len(payload) - 1}",
            "Content-Length": str(len(rest)),
        })
        assert patch.status_code == 202, describe(patch)
        assert patch.headers.get("Range") == f"0-{len(payload) - 1}", describe(patch)
        digest = sha256_digest(payload)
        put = requests.put(with_query(absolute_location(base, patch), digest=digest),
                           headers={"Content-Length": "0"}, timeout=HTTP_TIMEOUT)
        assert put.status_code == 201, describe(put)
        assert put.headers.get("Docker-Content-Digest") == digest, describe(put)
        blob = requests.get(absolute_location(base, put), timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200, describe(blob)
        assert blob.content == payload
        assert get_blob(base, repo, digest).content == payload
    except AssertionError as exc:
        raise AssertionError(f"{exc}{server_log(server)}") from exc


def test_completed_upload_survives_second_restart(make_registry: Callable[..., Any]) -> None:
    """A blob finished after one restart is still there after another (SIGKILL) one."""
    server = make_registry()
    base = server.url
    repo = f"test/restart-{uuid.uuid4().hex[:10]}"
    payload = os.urandom(70_000)
    upload_url = begin_chunked_upload(base, repo, payload[:30_000])
    server.restart(signal.SIGTERM)
    try:
        patch = requests.patch(upload_url, data=payload[30_000:], timeout=HTTP_TIMEOUT, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"30000-{len(payload) - 1}",
            "Content-Length": str(len(payload) - 30_000),
        })
        assert patch.status_code == 202, describe(patch)
        digest = sha256_digest(payload)
        put = requests.put(with_query(absolute_location(base, patch), digest=digest),
                           timeout=HTTP_TIMEOUT)
        assert put.status_code == 201, describe(put)
        server.restart(signal.SIGKILL)
        blob = get_blob(base, repo, digest)
        assert blob.status_code == 200, describe(blob)
        assert blob.content == payload
        # The finished session is gone.
        gone = requests.get(upload_url, timeout=HTTP_TIMEOUT)
        assert gone.status_code == 404, describe(gone)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{server_log(server)}") from exc
