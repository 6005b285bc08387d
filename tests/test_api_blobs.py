"""OCI Distribution Spec v1.1: pulling, checking and deleting blobs (end-2, end-10)."""

from __future__ import annotations

import re

import pytest
from ocihelpers import (
    EMPTY_JSON,
    STRICT,
    assert_blob,
    assert_error,
    assert_no_blob,
    blob_url,
    get_blob,
    head_blob,
    push_blob,
    random_bytes,
    request,
    requires_cargohold,
    sha256,
    unknown_digest,
)


def test_get_blob_returns_exact_bytes_and_headers(registry_url: str, repo: str) -> None:
    # "A GET request to an existing blob URL MUST provide the expected blob, with a response
    # code that MUST be 200 OK"; Docker-Content-Digest, if present, MUST match the body (and is
    # a MUST on main).
    data = random_bytes(2048)
    digest = push_blob(registry_url, repo, data)
    resp = get_blob(registry_url, repo, digest)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers.get("Content-Length") == str(len(data))
    assert resp.headers.get("Docker-Content-Digest") == digest


def test_head_blob_returns_200_with_length_and_no_body(registry_url: str, repo: str) -> None:
    # "A HEAD request to an existing blob or manifest URL MUST return 200 OK"; conformance
    # BlobHeadExists also requires an empty body and Content-Length equal to the blob size.
    data = random_bytes(777)
    digest = push_blob(registry_url, repo, data)
    resp = head_blob(registry_url, repo, digest)
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers.get("Content-Length") == str(len(data))
    assert resp.headers.get("Docker-Content-Digest") == digest


def test_unknown_blob_is_404_blob_unknown(registry_url: str, repo: str) -> None:
    push_blob(registry_url, repo, random_bytes(10))  # the repository exists
    missing = unknown_digest()
    head = head_blob(registry_url, repo, missing)
    assert head.status_code == 404
    assert head.content == b""
    assert_error(get_blob(registry_url, repo, missing), 404, "BLOB_UNKNOWN")


def test_blob_in_unknown_repository_is_404(registry_url: str, repo: str) -> None:
    resp = get_blob(registry_url, repo, unknown_digest())
    assert_error(resp, 404, ("BLOB_UNKNOWN", "NAME_UNKNOWN"))


@pytest.mark.parametrize("data", [b"", EMPTY_JSON], ids=["empty", "empty-json"])
def test_well_known_small_blobs(registry_url: str, repo: str, data: bytes) -> None:
    # Conformance pushes the zero-byte blob and the empty JSON blob "{}" and pulls them back.
    digest = push_blob(registry_url, repo, data)
    resp = get_blob(registry_url, repo, digest)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers.get("Content-Length") == str(len(data))
    head = head_blob(registry_url, repo, digest)
    assert head.status_code == 200
    assert head.headers.get("Content-Length") == str(len(data))


def test_blob_of_another_repository_is_not_visible(registry_url: str, repo: str) -> None:
    # Blobs are addressed per repository: knowing a digest must not give access to another
    # repository's content.
    data = random_bytes(300)
    digest = push_blob(registry_url, repo, data)
    other = repo + "-other"
    push_blob(registry_url, other, random_bytes(10))  # make sure `other` exists
    assert head_blob(registry_url, other, digest).status_code == 404
    assert_error(get_blob(registry_url, other, digest), 404, "BLOB_UNKNOWN")
    assert_blob(registry_url, repo, digest, data)


def test_delete_blob_then_404(registry_url: str, repo: str) -> None:
    # end-10: "Upon success, the registry MUST respond with code 202 Accepted"; conformance then
    # expects GET to answer 404 (and the new suite checks HEAD as "blob delete atomic").
    data = random_bytes(500)
    digest = push_blob(registry_url, repo, data)
    resp = request("DELETE", blob_url(registry_url, repo, digest))
    assert resp.status_code == 202
    assert_no_blob(registry_url, repo, digest)


def test_delete_unknown_blob_is_404(registry_url: str, repo: str) -> None:
    # "If the blob is not found, a 404 Not Found code MUST be returned."
    push_blob(registry_url, repo, random_bytes(10))
    assert_error(request("DELETE", blob_url(registry_url, repo, unknown_digest())), 404,
                 "BLOB_UNKNOWN")


def test_delete_blob_only_affects_that_repository(registry_url: str, repo: str) -> None:
    data = random_bytes(400)
    other = repo + "-copy"
    digest = push_blob(registry_url, repo, data)
    assert push_blob(registry_url, other, data) == digest
    assert request("DELETE", blob_url(registry_url, repo, digest)).status_code == 202
    assert_no_blob(registry_url, repo, digest)
    assert_blob(registry_url, other, digest, data)


def test_blob_can_be_pushed_again_after_delete(registry_url: str, repo: str) -> None:
    data = random_bytes(256)
    digest = push_blob(registry_url, repo, data)
    assert request("DELETE", blob_url(registry_url, repo, digest)).status_code == 202
    assert push_blob(registry_url, repo, data) == digest
    assert_blob(registry_url, repo, digest, data)


# ---------------------------------------------------------------- range requests (RFC 9110)

BLOB_LEN = 2048


@pytest.fixture
def ranged_blob(registry_url: str, repo: str) -> tuple[str, bytes]:
    data = random_bytes(BLOB_LEN)
    return push_blob(registry_url, repo, data), data


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=500-1499", 500, 1499),
    ("bytes=500-", 500, BLOB_LEN - 1),
    ("bytes=-500", BLOB_LEN - 500, BLOB_LEN - 1),
    ("bytes=2000-5000", 2000, BLOB_LEN - 1),  # last-pos past the end is clamped
    ("bytes=0-0", 0, 0),
])
def test_range_request_returns_206(registry_url: str, repo: str, ranged_blob: tuple[str, bytes],
                                   header: str, start: int, end: int) -> None:
    # "Registries SHOULD support the Range request header (RFC 9110)"; the conformance suite
    # fails a registry that answers 200 with the full blob to these requests.
    digest, data = ranged_blob
    resp = get_blob(registry_url, repo, digest, headers={"Range": header})
    assert resp.status_code == 206, resp.status_code
    assert resp.content == data[start:end + 1]
    assert resp.headers.get("Content-Length") == str(end - start + 1)
    assert resp.headers.get("Content-Range") in (
        f"bytes {start}-{end}/{BLOB_LEN}", f"bytes {start}-{end}/*")


@requires_cargohold  # distribution 2.8 writes a 200 header and then aborts the body here
@pytest.mark.parametrize("header", ["bytes=5000-10000", "bytes=500-0", f"bytes={BLOB_LEN}-"])
def test_unsatisfiable_range_is_416(registry_url: str, repo: str,
                                    ranged_blob: tuple[str, bytes], header: str) -> None:
    # Conformance: "range 5000-10000" and "range 500-0" MUST give 416, not the whole blob.
    digest, _ = ranged_blob
    resp = get_blob(registry_url, repo, digest, headers={"Range": header})
    assert_error(resp, 416, ("RANGE_INVALID", "BLOB_UNKNOWN", "SIZE_INVALID",
                             "BLOB_UPLOAD_INVALID", "UNSUPPORTED"))
    # RFC 9110 15.5.17: a 416 SHOULD carry Content-Range: bytes */<complete-length>.
    content_range = resp.headers.get("Content-Range")
    if STRICT or content_range:
        assert content_range == f"bytes */{BLOB_LEN}"


def test_head_does_not_deny_ranges(registry_url: str, repo: str,
                                   ranged_blob: tuple[str, bytes]) -> None:
    # A registry that serves ranges must not advertise "Accept-Ranges: none" (RFC 9110 14.3).
    digest, _ = ranged_blob
    resp = request("HEAD", blob_url(registry_url, repo, digest))
    assert resp.status_code == 200
    assert resp.headers.get("Content-Length") == str(BLOB_LEN)
    assert resp.headers.get("Accept-Ranges", "bytes") == "bytes"


def test_docker_content_digest_matches_requested_digest(registry_url: str, repo: str) -> None:
    data = random_bytes(99)
    digest = push_blob(registry_url, repo, data)
    for method in ("GET", "HEAD"):
        resp = request(method, blob_url(registry_url, repo, digest))
        header = resp.headers.get("Docker-Content-Digest", "")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", header), header
        assert header == sha256(data)
