"""One meaning for every request, and the spec's JSON error envelope even for requests the
HTTP server itself refuses.

Raw sockets send what HTTP client libraries will not: over-long request lines and headers,
invalid characters in the path, a duplicated Content-Type, a body longer than its
Content-Length. Each answer is `{"errors": [...]}` with a 4xx status, and nothing stored changes.
`%2F` in a repository name does not alias another repository, and a single-valued query
parameter given twice is refused rather than resolved by picking one.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from ocihelpers import (
    OCI_MANIFEST,
    TIMEOUT,
    Manifest,
    RepoState,
    assert_error,
    assert_no_blob,
    assert_unchanged,
    build_image,
    get_manifest,
    open_upload,
    push,
    push_blob,
    random_bytes,
    raw_request,
    request,
    requires_cargohold,
    sha256,
    snapshot,
    tags_of,
)
from requests.structures import CaseInsensitiveDict

pytestmark = requires_cargohold


@dataclass
class Reply:
    status_code: int
    headers: CaseInsensitiveDict[str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def exchange(base: str, data: bytes) -> list[Reply]:
    """Send raw bytes on one connection; every response until the server closes it."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    replies = []
    while received:
        head, sep, rest = received.partition(b"\r\n\r\n")
        assert sep, f"truncated response: {received[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        length = int(headers.get("content-length", "0"))
        replies.append(Reply(int(lines[0].split()[1]), headers, rest[:length]))
        received = rest[length:]
    assert replies, "no response"
    return replies


def assert_envelope(reply: Reply, status: int | tuple[int, ...], code: str | tuple[str, ...]
                    ) -> None:
    assert reply.headers.get("docker-distribution-api-version") == "registry/2.0", reply
    assert_error(reply, status, code)  # type: ignore[arg-type]  # same shape as RawResponse


def http(method: str, path: str, *headers: str, body: bytes = b"", close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body and not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Populated:
    repo: str
    image: Manifest
    before: RepoState


@pytest.fixture
def populated(registry_url: str) -> Iterator[Populated]:
    """A repository `<x>/seed` with a tagged image; after the test, proof nothing changed."""
    repo = f"envelope{uuid.uuid4().hex[:8]}/seed"
    image = push(registry_url, repo, build_image(registry_url, repo), "keep")
    before = snapshot(registry_url, repo, ["keep", image.digest], list(image.blobs))
    yield Populated(repo, image, before)
    assert_unchanged(registry_url, repo, before)


# ------------------------------------------------------------------- parser-level refusals

def test_long_digest_reaches_the_handler(registry_url: str, populated: Populated) -> None:
    digest = "sha256:" + "a" * 10240
    for method in ("GET", "HEAD", "DELETE"):
        (reply,) = exchange(registry_url, http(method, f"/v2/{populated.repo}/blobs/{digest}"))
        if method == "HEAD":
            assert reply.status_code == 400
        else:
            assert_envelope(reply, 400, "DIGEST_INVALID")


def test_long_digest_on_upload_put(registry_url: str, populated: Populated) -> None:
    url = urlsplit(open_upload(registry_url, populated.repo))
    path = f"{url.path}?{url.query}&digest=sha256:{'b' * 10240}".replace("?&", "?")
    (reply,) = exchange(registry_url, http("PUT", path, body=b"data"))
    assert_envelope(reply, 400, "DIGEST_INVALID")


def test_long_artifact_type_filter(registry_url: str, populated: Populated) -> None:
    path = (f"/v2/{populated.repo}/referrers/{populated.image.digest}"
            f"?artifactType=application/{'x' * 10240}")
    (reply,) = exchange(registry_url, http("GET", path))
    assert_envelope(reply, 400, "UNSUPPORTED")


def test_request_line_beyond_the_limit(registry_url: str, populated: Populated) -> None:
    path = f"/v2/{populated.repo}/manifests/sha256:{'c' * 70000}"
    (reply,) = exchange(registry_url, http("GET", path))
    assert_envelope(reply, 414, "UNSUPPORTED")


def test_header_beyond_the_limit(registry_url: str, populated: Populated) -> None:
    (reply,) = exchange(registry_url, http("GET", f"/v2/{populated.repo}/tags/list",
                                           f"X-Padding: {'p' * 20000}"))
    assert_envelope(reply, 431, "UNSUPPORTED")


def test_long_content_type_reaches_the_handler(registry_url: str,
                                               populated: Populated) -> None:
    body = build_image(registry_url, populated.repo).body
    (reply,) = exchange(registry_url, http(
        "PUT", f"/v2/{populated.repo}/manifests/keep", f"Content-Type: {'t' * 10240}/json",
        body=body))
    assert_envelope(reply, 400, "MANIFEST_INVALID")


@pytest.mark.parametrize("path", [
    "/v2/{repo}/tags/list\x01", "/v2/{repo}\x7f/tags/list", "/v2/{repo} x/tags/list",
    "/v2/{repo}/manifests/keep\x00",
], ids=["control-char", "delete-char", "space", "nul"])
def test_invalid_character_in_path(registry_url: str, populated: Populated, path: str) -> None:
    (reply,) = exchange(registry_url, http("GET", path.format(repo=populated.repo)))
    assert_envelope(reply, 400, ("UNSUPPORTED", "NAME_INVALID", "NAME_UNKNOWN"))


def test_duplicated_content_type(registry_url: str, populated: Populated) -> None:
    body = build_image(registry_url, populated.repo).body
    (reply,) = exchange(registry_url, http(
        "PUT", f"/v2/{populated.repo}/manifests/keep", f"Content-Type: {OCI_MANIFEST}",
        f"Content-Type: {OCI_MANIFEST}", body=body))
    assert_envelope(reply, 400, "UNSUPPORTED")
    assert get_manifest(registry_url, populated.repo, sha256(body),
                        method="HEAD").status_code == 404


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
def test_body_longer_than_content_length(registry_url: str, populated: Populated,
                                         close: bool) -> None:
    body = build_image(registry_url, populated.repo).body
    declared = len(body) // 2  # the declared part is not a valid manifest
    replies = exchange(registry_url, http(
        "PUT", f"/v2/{populated.repo}/manifests/keep", f"Content-Type: {OCI_MANIFEST}",
        f"Content-Length: {declared}", body=body, close=close))
    for reply in replies:  # the request (if parsed) and the trailing bytes
        assert_envelope(reply, 400, ("MANIFEST_INVALID", "UNSUPPORTED"))
    assert get_manifest(registry_url, populated.repo, sha256(body),
                        method="HEAD").status_code == 404


@pytest.mark.parametrize("raw", [
    b"PUT /v2/{repo}/manifests/keep HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n{}",
    b"PUT /v2/{repo}/manifests/keep HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Content-Length: 3\r\n\r\n{} ",
    b"PUT /v2/{repo}/manifests/keep HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n{}",
    b"GET /v2/{repo}/tags/list HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    b"GET /v2/{repo}/tags/list HTTP/9.9\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
], ids=["chunked-and-length", "two-lengths", "negative-length", "space-in-header-name",
        "http-9.9", "tls-hello"])
def test_other_malformed_requests(registry_url: str, populated: Populated, raw: bytes) -> None:
    for reply in exchange(registry_url, raw.replace(b"{repo}", populated.repo.encode())):
        assert_envelope(reply, (400, 505), "UNSUPPORTED")


def test_server_still_answers(registry_url: str) -> None:
    assert request("GET", f"{registry_url}/v2/").status_code == 200


# ------------------------------------------------------------------- %2F is not a slash

@pytest.mark.parametrize("escape", ["%2F", "%2f"])
def test_encoded_slash_is_not_a_path_separator(registry_url: str, populated: Populated,
                                               escape: str) -> None:
    alias = populated.repo.replace("/", escape)
    for method, path in (("GET", f"/v2/{alias}/tags/list"),
                         ("GET", f"/v2/{alias}/manifests/keep"),
                         ("HEAD", f"/v2/{alias}/manifests/keep"),
                         ("GET", f"/v2/{alias}/blobs/{next(iter(populated.image.blobs))}"),
                         ("DELETE", f"/v2/{alias}/manifests/keep"),
                         ("POST", f"/v2/{alias}/blobs/uploads/")):
        resp = raw_request(registry_url, method, path, headers={"Content-Length": "0"})
        assert resp.status_code in (400, 404), (method, path, resp.status_code)
        if method != "HEAD":
            assert_error(resp, (400, 404), ("NAME_INVALID", "NAME_UNKNOWN"))
    other = build_image(registry_url, populated.repo)
    resp = raw_request(registry_url, "PUT", f"/v2/{alias}/manifests/keep", other.body,
                       {"Content-Type": OCI_MANIFEST})
    assert_error(resp, (400, 404), ("NAME_INVALID", "NAME_UNKNOWN"))
    assert tags_of(registry_url, alias.replace(escape, "_")) is None


# ------------------------------------------------------------------- one value per parameter

@pytest.mark.parametrize(("suffix", "code"), [
    ("tags/list?n=1&n=2", "PAGINATION_NUMBER_INVALID"),
    ("tags/list?n=1&last=a&last=b", "UNSUPPORTED"),
    ("referrers/{digest}?artifactType=a/b&artifactType=c/d", "UNSUPPORTED"),
])
def test_repeated_query_parameter_on_reads(registry_url: str, populated: Populated,
                                           suffix: str, code: str) -> None:
    path = f"/v2/{populated.repo}/" + suffix.format(digest=populated.image.digest)
    assert_error(request("GET", registry_url + path), 400, code)


def test_repeated_query_parameter_on_catalog(registry_url: str) -> None:
    assert_error(request("GET", f"{registry_url}/v2/_catalog?n=1&n=2"), 400,
                 "PAGINATION_NUMBER_INVALID")
    assert_error(request("GET", f"{registry_url}/v2/_catalog?last=a&last=b"), 400,
                 "UNSUPPORTED")


@pytest.mark.parametrize("second", ["same", "other"])
def test_repeated_digest_on_upload_put(registry_url: str, populated: Populated,
                                       second: str) -> None:
    data = random_bytes(200)
    digest = sha256(data)
    other = digest if second == "same" else sha256(data + b"x")
    url = open_upload(registry_url, populated.repo)
    sep = "&" if "?" in url else "?"
    resp = request("PUT", f"{url}{sep}digest={digest}&digest={other}", data=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_no_blob(registry_url, populated.repo, digest)


@pytest.mark.parametrize("query", [
    "digest={d}&digest={d}", "mount={d}&mount={d}&from={src}", "mount={d}&from={src}&from={src}",
])
def test_repeated_query_parameter_on_upload_post(registry_url: str, populated: Populated,
                                                 query: str) -> None:
    source = f"envelope-src{uuid.uuid4().hex[:8]}/seed"
    data = random_bytes(150)
    digest = push_blob(registry_url, source, data)
    url = (f"{registry_url}/v2/{populated.repo}/blobs/uploads/?"
           + query.format(d=digest, src=source))
    resp = request("POST", url, data=data, headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, ("DIGEST_INVALID", "NAME_INVALID"))
    assert_no_blob(registry_url, populated.repo, digest)


def test_repeated_tag_parameter_still_names_several_tags(registry_url: str,
                                                         populated: Populated) -> None:
    # `tag` is a list by design (several tags in one manifest PUT): not ambiguous.
    image = build_image(registry_url, populated.repo)
    resp = request("PUT", f"{registry_url}/v2/{populated.repo}/manifests/{image.digest}"
                   "?tag=t1&tag=t2", data=image.body, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 201, resp.content[:300]
    assert {"t1", "t2"} <= set(tags_of(registry_url, populated.repo) or [])
    for ref in ("t1", "t2", image.digest):  # leave the repository as it was
        assert request("DELETE", f"{registry_url}/v2/{populated.repo}/manifests/{ref}"
                       ).status_code in (202, 404)
