"""OCI Distribution Spec v1.1: pushing blobs (end-4a/4b, end-5, end-6, end-11, end-13, end-14)."""

from __future__ import annotations

import hashlib
import re

import pytest
import requests
from ocihelpers import (
    OCTET,
    STRICT,
    add_query,
    assert_blob,
    assert_error,
    assert_no_blob,
    blob_url,
    digest_of,
    get_blob,
    head_blob,
    location_of,
    location_path,
    open_upload,
    patch_chunk,
    push_blob,
    put_upload,
    random_bytes,
    request,
    requires_cargohold,
    sha256,
    sha512,
    start_upload,
    unknown_digest,
)

UPLOAD_GONE = ("BLOB_UPLOAD_UNKNOWN",) if STRICT else ("BLOB_UPLOAD_UNKNOWN",
                                                        "BLOB_UPLOAD_INVALID")


def _chunk_size(resp: requests.Response, wanted: int) -> int:
    """Honour OCI-Chunk-Min-Length: every chunk but the last SHOULD be at least that long."""
    minimum = resp.headers.get("OCI-Chunk-Min-Length")
    if minimum:
        assert minimum.isdigit(), minimum
        return max(wanted, int(minimum))
    return wanted


def _assert_range(resp: requests.Response, last_byte: int) -> None:
    assert resp.headers.get("Range") == f"0-{last_byte}", resp.headers.get("Range")


def _assert_created(registry_url: str, repo: str, resp: requests.Response, digest: str,
                    data: bytes) -> None:
    """201 + Location of a pullable blob (conformance BlobVerifyLocation) + digest header."""
    assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    loc = location_of(registry_url, resp)
    pulled = request("GET", loc)
    assert pulled.status_code == 200
    assert pulled.content == data
    header = resp.headers.get("Docker-Content-Digest")
    if STRICT or header:
        assert header == digest
    assert_blob(registry_url, repo, digest, data)


# ----------------------------------------------------------------------------- monolithic

def test_post_returns_202_with_location(registry_url: str, repo: str) -> None:
    # end-4a: "the response MUST have a code of 202 Accepted, and MUST include Location".
    resp = start_upload(registry_url, repo)
    assert resp.status_code == 202
    assert resp.headers.get("Location")


def test_post_then_put_monolithic(registry_url: str, repo: str) -> None:
    data = random_bytes(1500)
    digest = sha256(data)
    resp = put_upload(open_upload(registry_url, repo), digest, data)
    _assert_created(registry_url, repo, resp, digest, data)


def test_post_then_put_location_is_the_blob_url(registry_url: str, repo: str) -> None:
    data = random_bytes(64)
    digest = sha256(data)
    resp = put_upload(open_upload(registry_url, repo), digest, data)
    assert resp.status_code == 201
    assert location_path(resp) == f"/v2/{repo}/blobs/{digest}"


def test_single_post_with_digest(registry_url: str, repo: str) -> None:
    # end-4b: "Successful completion of the request MUST return a 201 Created and MUST include
    # Location"; a registry without single-POST support SHOULD answer 202 + Location instead
    # (conformance then expects the blob to be absent until the PUT).
    data = random_bytes(700)
    digest = sha256(data)
    resp = request("POST", add_query(f"{registry_url}/v2/{repo}/blobs/uploads/",
                                     [("digest", digest)]),
                   data=data, headers={"Content-Type": OCTET})
    if STRICT:
        # Cargohold implements single-POST uploads.
        _assert_created(registry_url, repo, resp, digest, data)
        return
    assert resp.status_code in (201, 202)
    if resp.status_code == 201:
        _assert_created(registry_url, repo, resp, digest, data)
    else:
        assert head_blob(registry_url, repo, digest).status_code == 404
        final = put_upload(location_of(registry_url, resp), digest, data)
        _assert_created(registry_url, repo, final, digest, data)


def test_pushing_existing_blob_again_is_fine(registry_url: str, repo: str) -> None:
    data = random_bytes(300)
    digest = push_blob(registry_url, repo, data)
    resp = put_upload(open_upload(registry_url, repo), digest, data)
    _assert_created(registry_url, repo, resp, digest, data)


def test_sha512_blob(registry_url: str, repo: str) -> None:
    # Conformance runs every blob push API with sha512 as well; the Docker-Content-Digest it
    # gets back, if any, must be the sha512 digest it asked for.
    data = random_bytes(512)
    digest = sha512(data)
    resp = put_upload(open_upload(registry_url, repo), digest, data)
    if not STRICT:
        # distribution 2.8 stores the blob but only knows it by its sha256 digest.
        pytest.skip("reference registry reports sha256 for sha512 uploads")
    _assert_created(registry_url, repo, resp, digest, data)
    head = head_blob(registry_url, repo, digest)
    assert head.status_code == 200
    assert head.headers.get("Content-Length") == str(len(data))
    assert head.headers.get("Docker-Content-Digest") == digest


@requires_cargohold  # distribution 2.8 does not know sha512 digests
def test_sha512_chunked_upload(registry_url: str, repo: str) -> None:
    data = random_bytes(3000)
    digest = sha512(data)
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    url = location_of(registry_url, post)
    offset = 0
    for _ in range(len(data)):  # bounded
        if offset >= len(data):
            break
        chunk = data[offset:offset + size]
        resp = patch_chunk(url, chunk, start=offset)
        assert resp.status_code == 202
        offset += len(chunk)
        url = location_of(registry_url, resp)
    _assert_created(registry_url, repo, put_upload(url, digest), digest, data)


def test_digest_mismatch_is_rejected_and_nothing_stored(registry_url: str, repo: str) -> None:
    # end-6 failure 400; conformance "bad digest post+put" expects 400.
    data = random_bytes(800)
    claimed = sha256(b"something else entirely")
    resp = put_upload(open_upload(registry_url, repo), claimed, data)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_no_blob(registry_url, repo, claimed)
    assert_no_blob(registry_url, repo, sha256(data))


def test_single_post_digest_mismatch(registry_url: str, repo: str) -> None:
    # Conformance "bad digest post only": 400, or 202 and then 400 on the PUT.
    data = random_bytes(800)
    claimed = sha256(data + b"oh no")
    resp = request("POST", add_query(f"{registry_url}/v2/{repo}/blobs/uploads/",
                                     [("digest", claimed)]),
                   data=data, headers={"Content-Type": OCTET})
    if STRICT or resp.status_code != 202:
        assert_error(resp, 400, "DIGEST_INVALID")
    else:
        assert_error(put_upload(location_of(registry_url, resp), claimed, data), 400,
                     "DIGEST_INVALID")
    assert_no_blob(registry_url, repo, claimed)
    assert_no_blob(registry_url, repo, sha256(data))


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "foo"])
def test_unsupported_digest_algorithm(registry_url: str, repo: str, algorithm: str) -> None:
    data = random_bytes(100)
    if algorithm == "foo":
        digest = "foo:" + hashlib.sha256(data).hexdigest()
    else:
        digest = digest_of(data, algorithm)
    resp = put_upload(open_upload(registry_url, repo), digest, data)
    assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"))
    assert_no_blob(registry_url, repo, sha256(data))


# ----------------------------------------------------------------------------- streamed

def test_streamed_patch_without_content_range(registry_url: str, repo: str) -> None:
    # Conformance "Blob Upload Streamed": PATCH with the whole blob and no Content-Range -> 202,
    # then PUT ?digest= with no body -> 201.
    data = random_bytes(4000)
    digest = sha256(data)
    url = open_upload(registry_url, repo)
    resp = request("PATCH", url, data=data, headers={"Content-Type": OCTET})
    assert resp.status_code == 202
    _assert_range(resp, len(data) - 1)
    final = put_upload(location_of(registry_url, resp), digest)
    _assert_created(registry_url, repo, final, digest, data)


def test_streamed_upload_bad_digest(registry_url: str, repo: str) -> None:
    data = random_bytes(1000)
    url = open_upload(registry_url, repo)
    resp = request("PATCH", url, data=data, headers={"Content-Type": OCTET})
    assert resp.status_code == 202
    claimed = sha256(data + b"oh no")
    assert_error(put_upload(location_of(registry_url, resp), claimed), 400, "DIGEST_INVALID")
    assert_no_blob(registry_url, repo, claimed)
    assert_no_blob(registry_url, repo, sha256(data))


# ----------------------------------------------------------------------------- chunked

def _chunks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(i, data[i:i + size]) for i in range(0, len(data), size)]


def test_chunked_upload_in_order(registry_url: str, repo: str) -> None:
    # POST (Content-Length: 0) -> 202; each PATCH with Content-Range/Content-Length -> 202 with
    # Location and "Range: 0-<end-of-range>"; PUT ?digest= -> 201.
    post = start_upload(registry_url, repo)
    assert post.status_code == 202
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 3 - 5)
    digest = sha256(data)
    url = location_of(registry_url, post)
    for start, chunk in _chunks(data, size):
        resp = patch_chunk(url, chunk, start=start)
        assert resp.status_code == 202, (resp.status_code, resp.content[:300])
        _assert_range(resp, start + len(chunk) - 1)
        url = location_of(registry_url, resp)
    _assert_created(registry_url, repo, put_upload(url, digest), digest, data)


def test_chunked_upload_final_chunk_in_put(registry_url: str, repo: str) -> None:
    # "The final chunk MAY be uploaded using a PATCH request or it MAY be uploaded in the
    # closing PUT request" (conformance "PUT request with final chunk should return 201").
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 2 + 17)
    digest = sha256(data)
    url = location_of(registry_url, post)
    chunks = _chunks(data, size)
    for start, chunk in chunks[:-1]:
        resp = patch_chunk(url, chunk, start=start)
        assert resp.status_code == 202
        url = location_of(registry_url, resp)
    start, chunk = chunks[-1]
    resp = put_upload(url, digest, chunk,
                      headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"})
    _assert_created(registry_url, repo, resp, digest, data)


def test_upload_status_reports_range_and_location(registry_url: str, repo: str) -> None:
    # end-13: "The response to an active upload <location> MUST be a 204 No Content response
    # code, and MUST have Location and Range: 0-<end-of-range>".
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size + 10)
    url = location_of(registry_url, post)
    resp = patch_chunk(url, data[:size], start=0)
    assert resp.status_code == 202
    url = location_of(registry_url, resp)
    status = request("GET", url)
    assert status.status_code == 204
    assert status.content == b""
    _assert_range(status, size - 1)
    url = location_of(registry_url, status)
    resp = patch_chunk(url, data[size:], start=size)
    assert resp.status_code == 202
    digest = sha256(data)
    _assert_created(registry_url, repo, put_upload(location_of(registry_url, resp), digest),
                    digest, data)


def test_upload_status_of_fresh_session(registry_url: str, repo: str) -> None:
    url = open_upload(registry_url, repo)
    status = request("GET", url)
    assert status.status_code == 204
    assert status.headers.get("Location")
    # Nothing uploaded yet: distribution answers "0-0"; "0--1" is the literal reading.
    assert re.fullmatch(r"0-(0|-1)", status.headers.get("Range", "")), status.headers


@requires_cargohold  # distribution 2.8 ignores Content-Range and appends out-of-order chunks
def test_out_of_order_first_chunk_is_416(registry_url: str, repo: str) -> None:
    # "If a chunk is uploaded out of order, the registry MUST respond with a 416" (conformance
    # "Out-of-order blob upload should return 416"). The session survives and a GET reports it.
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 2)
    url = location_of(registry_url, post)
    resp = patch_chunk(url, data[size:], start=size)
    assert_error(resp, 416, ("BLOB_UPLOAD_INVALID", "RANGE_INVALID", "SIZE_INVALID"))
    status = request("GET", url)
    assert status.status_code == 204
    assert re.fullmatch(r"0-(0|-1)", status.headers.get("Range", "")), status.headers
    url = location_of(registry_url, status)
    for start, chunk in _chunks(data, size):
        resp = patch_chunk(url, chunk, start=start)
        assert resp.status_code == 202
        url = location_of(registry_url, resp)
    digest = sha256(data)
    _assert_created(registry_url, repo, put_upload(url, digest), digest, data)


@requires_cargohold  # distribution 2.8 ignores Content-Range and appends the chunk twice
def test_retried_chunk_is_416_and_upload_resumes(registry_url: str, repo: str) -> None:
    # Conformance: "Retry previous blob chunk should return 416", then "Get on stale blob upload
    # should return 204 with a range and location", then the second chunk and the PUT succeed.
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 2 - 7)
    first_url = location_of(registry_url, post)
    resp = patch_chunk(first_url, data[:size], start=0)
    assert resp.status_code == 202
    _assert_range(resp, size - 1)
    retry = patch_chunk(first_url, data[:size], start=0)
    assert_error(retry, 416, ("BLOB_UPLOAD_INVALID", "RANGE_INVALID", "SIZE_INVALID"))
    status = request("GET", first_url)
    assert status.status_code == 204
    _assert_range(status, size - 1)
    resp = patch_chunk(location_of(registry_url, status), data[size:], start=size)
    assert resp.status_code == 202
    _assert_range(resp, len(data) - 1)
    digest = sha256(data)
    final = put_upload(location_of(registry_url, resp), digest)
    _assert_created(registry_url, repo, final, digest, data)


@requires_cargohold  # distribution 2.8 ignores Content-Range
def test_out_of_order_chunk_in_final_put_is_416(registry_url: str, repo: str) -> None:
    # Conformance "chunked out-of-order and put chunk": a final PUT whose chunk does not start
    # at the current offset gets 416 (allowed on PUT by the unreleased spec change) and the
    # session stays usable.
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 3 - 5)
    digest = sha256(data)
    url = location_of(registry_url, post)
    resp = patch_chunk(url, data[:size], start=0)
    assert resp.status_code == 202
    url = location_of(registry_url, resp)
    skip_to = 2 * size
    bad = put_upload(url, digest, data[skip_to:],
                     headers={"Content-Range": f"{skip_to}-{len(data) - 1}"})
    assert_error(bad, 416, ("BLOB_UPLOAD_INVALID", "RANGE_INVALID", "SIZE_INVALID"))
    assert_no_blob(registry_url, repo, digest)
    status = request("GET", url)
    assert status.status_code == 204
    _assert_range(status, size - 1)
    url = location_of(registry_url, status)
    resp = patch_chunk(url, data[size:skip_to], start=size)
    assert resp.status_code == 202
    final = put_upload(location_of(registry_url, resp), digest, data[skip_to:],
                       headers={"Content-Range": f"{skip_to}-{len(data) - 1}"})
    _assert_created(registry_url, repo, final, digest, data)


def test_chunked_upload_bad_digest(registry_url: str, repo: str) -> None:
    # Conformance "bad digest chunked": the closing PUT with the wrong digest -> 400.
    post = start_upload(registry_url, repo)
    size = _chunk_size(post, 1024)
    data = random_bytes(size * 2)
    url = location_of(registry_url, post)
    for start, chunk in _chunks(data, size):
        resp = patch_chunk(url, chunk, start=start)
        assert resp.status_code == 202
        url = location_of(registry_url, resp)
    claimed = sha256(data + b"oh no")
    assert_error(put_upload(url, claimed), 400, "DIGEST_INVALID")
    assert_no_blob(registry_url, repo, claimed)
    assert_no_blob(registry_url, repo, sha256(data))


def test_session_is_gone_after_completion(registry_url: str, repo: str) -> None:
    data = random_bytes(100)
    url = open_upload(registry_url, repo)
    resp = put_upload(url, sha256(data), data)
    assert resp.status_code == 201
    assert_error(request("GET", url), 404, UPLOAD_GONE)
    assert_error(patch_chunk(url, b"more", start=len(data)), 404, UPLOAD_GONE)


# ----------------------------------------------------------------------------- cancel

def test_delete_upload_cancels_session(registry_url: str, repo: str) -> None:
    # end-14 (main): "If successful, the response SHOULD be a 204 No Content"; conformance
    # "blob-post-cancel" expects exactly 204. Afterwards the session is unknown.
    url = open_upload(registry_url, repo)
    resp = patch_chunk(url, random_bytes(100), start=0)
    assert resp.status_code == 202
    url = location_of(registry_url, resp)
    cancel = request("DELETE", url, headers={"Content-Length": "0"})
    assert cancel.status_code == 204
    assert_error(request("GET", url), 404, UPLOAD_GONE)
    assert_error(patch_chunk(url, b"x", start=100), 404, UPLOAD_GONE)
    assert_error(put_upload(url, sha256(b"x"), b"x"), 404, UPLOAD_GONE)
    assert_no_blob(registry_url, repo, sha256(b"x"))


def test_delete_unknown_upload_is_404(registry_url: str, repo: str) -> None:
    url = open_upload(registry_url, repo)
    assert request("DELETE", url).status_code == 204
    assert_error(request("DELETE", url), 404, UPLOAD_GONE)


# ----------------------------------------------------------------------------- mount

def test_cross_repository_mount(registry_url: str, repo: str) -> None:
    # end-11: "The response to a successful mount MUST be 201 Created, and MUST contain
    # Location"; the old conformance requires Location == /v2/<name>/blobs/<digest>.
    data = random_bytes(900)
    source = repo + "-src"
    digest = push_blob(registry_url, source, data)
    resp = start_upload(registry_url, repo, mount=digest, **{"from": source})
    assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    assert location_path(resp) == f"/v2/{repo}/blobs/{digest}"
    assert resp.headers.get("Docker-Content-Digest") == digest
    _assert_created(registry_url, repo, resp, digest, data)
    # the source keeps its blob
    assert_blob(registry_url, source, digest, data)


def test_mount_of_unknown_blob_opens_upload_session(registry_url: str, repo: str) -> None:
    # "if a registry ... is unable to mount the requested blob, it SHOULD return a 202";
    # conformance "mount missing" fails a 201, and the old suite wants the session under
    # /v2/<name>/blobs/uploads/.
    source = repo + "-src"
    push_blob(registry_url, source, random_bytes(10))
    missing = unknown_digest()
    resp = start_upload(registry_url, repo, mount=missing, **{"from": source})
    assert resp.status_code == 202
    assert location_path(resp).startswith(f"/v2/{repo}/blobs/uploads/")
    assert head_blob(registry_url, repo, missing).status_code == 404
    data = random_bytes(50)
    final = put_upload(location_of(registry_url, resp), sha256(data), data)
    _assert_created(registry_url, repo, final, sha256(data), data)


def test_mount_without_from_of_unknown_blob(registry_url: str, repo: str) -> None:
    # Conformance "Cross-mounting of a blob without the from argument should yield session id".
    resp = start_upload(registry_url, repo, mount=unknown_digest())
    assert resp.status_code == 202
    assert resp.headers.get("Location")


def test_mount_without_from_of_known_blob(registry_url: str, repo: str) -> None:
    # "The registry MAY treat the from parameter as optional" (conformance "mount anonymous"
    # accepts 201, or 202 and a normal upload).
    data = random_bytes(321)
    digest = push_blob(registry_url, repo + "-src", data)
    resp = start_upload(registry_url, repo, mount=digest)
    assert resp.status_code in (201, 202)
    if resp.status_code == 201:
        _assert_created(registry_url, repo, resp, digest, data)
    else:
        assert head_blob(registry_url, repo, digest).status_code == 404
        final = put_upload(location_of(registry_url, resp), digest, data)
        _assert_created(registry_url, repo, final, digest, data)


def test_mounted_blob_survives_delete_in_source(registry_url: str, repo: str) -> None:
    data = random_bytes(600)
    source = repo + "-src"
    digest = push_blob(registry_url, source, data)
    resp = start_upload(registry_url, repo, mount=digest, **{"from": source})
    assert resp.status_code == 201
    assert request("DELETE", blob_url(registry_url, source, digest)).status_code == 202
    assert_no_blob(registry_url, source, digest)
    resp = get_blob(registry_url, repo, digest)
    assert resp.status_code == 200
    assert resp.content == data
