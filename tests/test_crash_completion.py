"""A crash between the two steps that complete an upload: the verified bytes moved into
place (the upload file renamed to the blob's path), and the transaction that links them and
ends the session. The session then still says where the upload stands, but its file is gone.

The state is made with the server stopped, by the same store calls the completion runs up to
that instant (the pin, then the commit of the file). The client that resumes with the same
final request gets its 201, as it would have without the crash; without the pin that proves
which digest the bytes verified as, the session stays unknown and nothing is linked."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import pytest
import requests

from cargohold.storage.collection import CollectionStore
from cargohold.storage.database import Database
from cargohold.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
    reason="starts, stops and edits its own Cargohold server's data",
)

TIMEOUT = 30
REPO = "crash/completion"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def patched_upload(base: str, data: bytes) -> tuple[str, str]:
    """Every byte PATCHed and acknowledged; (the upload's URL, its id)."""
    post = requests.post(f"{base}/v2/{REPO}/blobs/uploads/", timeout=TIMEOUT)
    assert post.status_code == 202
    url = base + post.headers["Location"]
    patch = requests.patch(url, data=data, timeout=TIMEOUT, headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"0-{len(data) - 1}"})
    assert patch.status_code == 202
    return base + patch.headers["Location"], post.headers["Docker-Upload-UUID"]


def crash_after_commit(server: Any, upload_id: str, digest: str, size: int,
                       pinned: bool) -> None:
    """What the completion leaves when it is killed right after moving the bytes."""
    database = Database(f"sqlite:///{server.data_dir / 'metadata.db'}")
    try:
        if pinned:
            assert CollectionStore(database).pin_blob(upload_id, digest)
    finally:
        database.dispose()
    store = FilesystemBlobStore(server.data_dir / "blobs")
    asyncio.run(store.commit_upload(upload_id, size, digest))
    assert not store.upload_path(upload_id).exists() and store.blob_path(digest).exists()


def assert_not_completed(base: str, url: str, digest: str) -> None:
    """The final PUT naming `digest` is refused, and the blob is not linked to the repository."""
    put = requests.put(url, params={"digest": digest}, timeout=TIMEOUT)
    assert put.status_code == 404 and put.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    head = requests.head(f"{base}/v2/{REPO}/blobs/{digest}", timeout=TIMEOUT)
    assert head.status_code == 404


@pytest.mark.parametrize("size", [1500, 5 * 1024 * 1024 + 3])
def test_a_completion_cut_off_after_its_bytes_moved_finishes_on_retry(
        make_registry: Any, size: int) -> None:
    server = make_registry()
    data = os.urandom(size)
    url, upload_id = patched_upload(server.url, data)
    server.stop()
    crash_after_commit(server, upload_id, sha256(data), size, pinned=True)
    server.start()

    status = requests.get(url, timeout=TIMEOUT)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{size - 1}"
    put = requests.put(url, params={"digest": sha256(data)}, timeout=TIMEOUT)
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == sha256(data)
    got = requests.get(f"{server.url}/v2/{REPO}/blobs/{sha256(data)}", timeout=TIMEOUT)
    assert got.status_code == 200 and got.content == data
    assert requests.get(url, timeout=TIMEOUT).status_code == 404  # the session ended


def test_without_the_pin_the_session_cannot_claim_the_blob(make_registry: Any) -> None:
    server = make_registry()
    data = os.urandom(4000)
    url, upload_id = patched_upload(server.url, data)
    server.stop()
    crash_after_commit(server, upload_id, sha256(data), len(data), pinned=False)
    server.start()

    assert_not_completed(server.url, url, sha256(data))


def test_a_retry_naming_another_digest_is_not_completed(make_registry: Any) -> None:
    server = make_registry()
    data, other = os.urandom(4000), os.urandom(4000)
    url, upload_id = patched_upload(server.url, data)
    # Another blob the registry holds, of the same size, in the same repository's reach.
    post = requests.post(f"{server.url}/v2/other/blobs/uploads/",
                         params={"digest": sha256(other)}, data=other, timeout=TIMEOUT)
    assert post.status_code == 201
    server.stop()
    crash_after_commit(server, upload_id, sha256(data), len(data), pinned=True)
    server.start()

    assert_not_completed(server.url, url, sha256(other))
