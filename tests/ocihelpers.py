"""HTTP helpers shared by the OCI Distribution Spec tests.

Everything here talks to the registry over HTTP with ``requests`` (plus ``http.client`` for the
few requests whose path must reach the server byte for byte) and knows nothing about Cargohold's
internals, so the same tests can be pointed at any registry through
``CARGOHOLD_TEST_REGISTRY_URL``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests

EXTERNAL = bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL"))
# STRICT: hold the registry to every MUST/SHOULD we expect Cargohold to meet. When the suite runs
# against another registry (the CNCF reference registry), behaviour that the spec leaves open or
# where that registry is known to diverge is checked more loosely; each such place says why.
STRICT = not EXTERNAL

requires_cargohold = pytest.mark.skipif(
    EXTERNAL,
    reason="feature absent from (or diverging in) the reference registry; run against Cargohold",
)

TIMEOUT = 60

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET = "application/octet-stream"

EMPTY_JSON = b"{}"

# The error codes the spec defines, plus the ones the CNCF distribution project adds (and the
# conformance suite accepts).
SPEC_ERROR_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})
EXTRA_ERROR_CODES = frozenset({
    "TAG_INVALID", "MANIFEST_UNVERIFIED", "RANGE_INVALID", "PAGINATION_NUMBER_INVALID",
    "UNAVAILABLE", "UNKNOWN",
})
ALL_ERROR_CODES = SPEC_ERROR_CODES | EXTRA_ERROR_CODES

_session = requests.Session()


# --------------------------------------------------------------------------- digests and URLs

def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def sha256(data: bytes) -> str:
    return digest_of(data, "sha256")


def sha512(data: bytes) -> str:
    return digest_of(data, "sha512")


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def unknown_digest(algorithm: str = "sha256") -> str:
    """A well-formed digest of content nobody pushed."""
    return digest_of(b"never pushed " + uuid.uuid4().bytes, algorithm)


def resolve(base: str, location: str) -> str:
    """Absolute URL for a (possibly relative) Location header."""
    return urljoin(base + "/", location)


def add_query(url: str, params: Iterable[tuple[str, str]]) -> str:
    """Append query parameters to a URL, keeping any the registry put there."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def location_of(base: str, resp: requests.Response) -> str:
    loc = resp.headers.get("Location")
    assert loc, f"response {resp.status_code} has no Location header: {dict(resp.headers)}"
    return resolve(base, loc)


def location_path(resp: requests.Response) -> str:
    loc = resp.headers.get("Location")
    assert loc, f"response {resp.status_code} has no Location header"
    return urlsplit(loc).path


# --------------------------------------------------------------------------- raw HTTP

def request(method: str, url: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("allow_redirects", method.upper() == "GET")
    return _session.request(method, url, **kwargs)


@dataclass
class RawResponse:
    """Minimal response for requests sent through ``http.client`` (path not normalised)."""

    status_code: int
    headers: requests.structures.CaseInsensitiveDict[str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def raw_request(base: str, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> RawResponse:
    """Send ``path`` exactly as given (no dot-segment removal, no re-quoting)."""
    parts = urlsplit(base)
    assert parts.hostname == "127.0.0.1" or parts.hostname == "localhost", base
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        content = resp.read()
        hdrs: requests.structures.CaseInsensitiveDict[str] = (
            requests.structures.CaseInsensitiveDict(resp.getheaders()))
        return RawResponse(resp.status, hdrs, content)
    finally:
        conn.close()


# --------------------------------------------------------------------------- error envelopes

def error_codes(resp: requests.Response | RawResponse) -> list[str]:
    """The ``code`` of every entry of the ``{"errors": [...]}`` envelope (asserting its shape)."""
    try:
        body = json.loads(resp.content)
    except ValueError as exc:
        raise AssertionError(
            f"error body is not JSON (status {resp.status_code}): {resp.content[:300]!r}") from exc
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    assert body["errors"], f"empty errors list: {body}"
    codes = []
    for entry in body["errors"]:
        assert isinstance(entry, dict), body
        code = entry.get("code")
        assert isinstance(code, str) and re.fullmatch(r"[A-Z_]+", code), (
            f"error code must be uppercase letters and underscores: {entry}")
        if "message" in entry:
            assert isinstance(entry["message"], str), entry
        codes.append(code)
    return codes


def assert_error(resp: requests.Response | RawResponse, status: int | Iterable[int],
                 codes: str | Iterable[str] | None = None) -> list[str]:
    """Assert an error status, a well-formed JSON error envelope, and (when given) its code.

    ``codes``: at least one error in the envelope must carry one of these codes, and every code
    must be one the spec (or the distribution project) defines.
    """
    allowed_status = {status} if isinstance(status, int) else set(status)
    assert resp.status_code in allowed_status, (
        f"expected status {sorted(allowed_status)}, got {resp.status_code}: {resp.content[:500]!r}")
    ctype = resp.headers.get("Content-Type", "")
    assert "json" in ctype.lower(), f"error response Content-Type is {ctype!r}, expected JSON"
    found = error_codes(resp)
    for code in found:
        assert code in ALL_ERROR_CODES, f"unknown error code {code!r} in {found}"
    if codes is not None:
        wanted = {codes} if isinstance(codes, str) else set(codes)
        assert wanted & set(found), f"expected one of {sorted(wanted)}, got {found}"
    return found


def assert_not_5xx(resp: requests.Response | RawResponse) -> None:
    assert resp.status_code < 500, f"server error {resp.status_code}: {resp.content[:500]!r}"


# --------------------------------------------------------------------------- blobs

def start_upload(base: str, repo: str, **params: str) -> requests.Response:
    url = f"{base}/v2/{repo}/blobs/uploads/"
    if params:
        url = add_query(url, params.items())
    return request("POST", url, headers={"Content-Length": "0"})


def open_upload(base: str, repo: str) -> str:
    """POST an upload session; return its absolute URL."""
    resp = start_upload(base, repo)
    assert resp.status_code == 202, (resp.status_code, resp.content[:300])
    return location_of(base, resp)


def put_upload(url: str, digest: str, data: bytes = b"",
               headers: Mapping[str, str] | None = None) -> requests.Response:
    hdrs = {"Content-Type": OCTET, "Content-Length": str(len(data))}
    hdrs.update(headers or {})
    return request("PUT", add_query(url, [("digest", digest)]), data=data, headers=hdrs)


def patch_chunk(url: str, data: bytes, start: int | None = None,
                content_range: str | None = None) -> requests.Response:
    hdrs = {"Content-Type": OCTET, "Content-Length": str(len(data))}
    if content_range is not None:
        hdrs["Content-Range"] = content_range
    elif start is not None:
        hdrs["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return request("PATCH", url, data=data, headers=hdrs)


def push_blob(base: str, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    """Monolithic POST + PUT; assert 201; return the digest."""
    digest = digest_of(data, algorithm)
    resp = put_upload(open_upload(base, repo), digest, data)
    assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    return digest


def blob_url(base: str, repo: str, digest: str) -> str:
    return f"{base}/v2/{repo}/blobs/{digest}"


def get_blob(base: str, repo: str, digest: str, **kwargs: Any) -> requests.Response:
    return request("GET", blob_url(base, repo, digest), **kwargs)


def head_blob(base: str, repo: str, digest: str) -> requests.Response:
    return request("HEAD", blob_url(base, repo, digest))


def assert_blob(base: str, repo: str, digest: str, data: bytes) -> None:
    resp = get_blob(base, repo, digest)
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    assert resp.content == data


def assert_no_blob(base: str, repo: str, digest: str) -> None:
    resp = head_blob(base, repo, digest)
    assert resp.status_code == 404, f"blob {digest} unexpectedly present ({resp.status_code})"
    resp = get_blob(base, repo, digest)
    assert_error(resp, 404, ("BLOB_UNKNOWN", "NAME_UNKNOWN"))


# --------------------------------------------------------------------------- manifests

def encode(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


def descriptor(media_type: str, data: bytes, algorithm: str = "sha256",
               **extra: Any) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(data, algorithm),
                            "size": len(data)}
    desc.update(extra)
    return desc


def manifest_url(base: str, repo: str, ref: str) -> str:
    return f"{base}/v2/{repo}/manifests/{ref}"


def put_manifest(base: str, repo: str, ref: str, body: bytes, media_type: str | None,
                 params: Iterable[tuple[str, str]] = (),
                 headers: dict[str, str] | None = None) -> requests.Response:
    url = manifest_url(base, repo, ref)
    params = list(params)
    if params:
        url = add_query(url, params)
    sent = dict(headers or {})
    if media_type is not None:
        sent["Content-Type"] = media_type
    return request("PUT", url, data=body, headers=sent)


def get_manifest(base: str, repo: str, ref: str, method: str = "GET",
                 accept: Iterable[str] | None = None) -> requests.Response:
    types = list(accept) if accept is not None else [
        OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST]
    return request(method, manifest_url(base, repo, ref), headers={"Accept": ", ".join(types)})


@dataclass
class Manifest:
    """A manifest as pushed: its exact bytes, media type and digest."""

    body: bytes
    media_type: str
    algorithm: str = "sha256"
    blobs: dict[str, bytes] = field(default_factory=dict)
    response: requests.Response | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.body, self.algorithm)

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                "size": self.size}
        desc.update(extra)
        return desc


def image_manifest(config: dict[str, Any], layers: list[dict[str, Any]], *,
                   media_type: str | None = OCI_MANIFEST, artifact_type: str | None = None,
                   subject: dict[str, Any] | None = None,
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = config
    doc["layers"] = layers
    if subject is not None:
        doc["subject"] = subject
    if annotations is not None:
        doc["annotations"] = annotations
    return doc


def build_image(base: str, repo: str, *, layers: int = 1, config_media_type: str = OCI_CONFIG,
                config_data: bytes | None = None, layer_media_type: str = OCI_LAYER_GZIP,
                media_type: str = OCI_MANIFEST, artifact_type: str | None = None,
                subject: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
                algorithm: str = "sha256", push_blobs: bool = True) -> Manifest:
    """Make (and by default upload the blobs of) a unique image manifest; do not push it."""
    if config_data is None:
        config_data = encode({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": []},
                              "author": f"cargohold-tests {uuid.uuid4().hex}"})
    blobs = {digest_of(config_data, algorithm): config_data}
    layer_descs = []
    for _ in range(layers):
        data = random_bytes(64 + (uuid.uuid4().int % 512))
        blobs[digest_of(data, algorithm)] = data
        layer_descs.append(descriptor(layer_media_type, data, algorithm))
    doc = image_manifest(descriptor(config_media_type, config_data, algorithm), layer_descs,
                         media_type=media_type, artifact_type=artifact_type, subject=subject,
                         annotations=annotations)
    if push_blobs:
        for data in blobs.values():
            push_blob(base, repo, data, algorithm)
    return Manifest(encode(doc), media_type, algorithm, blobs)


def push(base: str, repo: str, manifest: Manifest, ref: str | None = None,
         params: Iterable[tuple[str, str]] = ()) -> Manifest:
    """PUT a manifest (by digest unless ``ref`` is given) and assert 201 + headers."""
    resp = put_manifest(base, repo, ref or manifest.digest, manifest.body, manifest.media_type,
                        params)
    assert resp.status_code == 201, (resp.status_code, resp.content[:500])
    assert resp.headers.get("Location"), "manifest PUT response lacks Location"
    got = resp.headers.get("Docker-Content-Digest")
    if STRICT or got:
        assert got == manifest.digest, (got, manifest.digest)
    manifest.response = resp
    return manifest


def push_image(base: str, repo: str, ref: str | None = None, **kwargs: Any) -> Manifest:
    return push(base, repo, build_image(base, repo, **kwargs), ref)


def build_index(children: list[Manifest | dict[str, Any]], *, media_type: str = OCI_INDEX,
                artifact_type: str | None = None, subject: dict[str, Any] | None = None,
                annotations: dict[str, str] | None = None,
                algorithm: str = "sha256") -> Manifest:
    manifests = []
    for i, child in enumerate(children):
        desc = child.descriptor() if isinstance(child, Manifest) else dict(child)
        desc.setdefault("platform", {"architecture": ["amd64", "arm64", "s390x"][i % 3],
                                     "os": "linux"})
        manifests.append(desc)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["manifests"] = manifests
    if subject is not None:
        doc["subject"] = subject
    if annotations is not None:
        doc["annotations"] = annotations
    return Manifest(encode(doc), media_type, algorithm)


def assert_manifest(base: str, repo: str, ref: str, manifest: Manifest) -> requests.Response:
    """GET by ``ref`` returns exactly the pushed bytes with the right headers."""
    resp = get_manifest(base, repo, ref)
    assert resp.status_code == 200, (ref, resp.status_code, resp.content[:300])
    assert resp.content == manifest.body
    assert resp.headers.get("Content-Type") == manifest.media_type
    assert resp.headers.get("Content-Length") == str(manifest.size)
    got = resp.headers.get("Docker-Content-Digest")
    if STRICT or got:
        assert got == manifest.digest
    return resp


def assert_no_manifest(base: str, repo: str, ref: str) -> None:
    resp = get_manifest(base, repo, ref, method="HEAD")
    assert resp.status_code == 404, f"manifest {ref} unexpectedly present ({resp.status_code})"
    resp = get_manifest(base, repo, ref)
    assert_error(resp, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))


# --------------------------------------------------------------------------- tags / snapshots

def list_tags(base: str, repo: str, **params: str | int) -> requests.Response:
    url = f"{base}/v2/{repo}/tags/list"
    if params:
        url = add_query(url, [(k, str(v)) for k, v in params.items()])
    return request("GET", url)


def tags_of(base: str, repo: str) -> list[str] | None:
    """All tags of a repository, or None when the registry says the repository is unknown."""
    resp = list_tags(base, repo)
    if resp.status_code == 404:
        assert_error(resp, 404, "NAME_UNKNOWN")
        return None
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    body = resp.json()
    assert body.get("name") == repo, body
    return list(body.get("tags") or [])


def next_link(base: str, resp: requests.Response) -> str | None:
    """The target of an RFC 5988 ``Link: <...>; rel="next"`` header, if any."""
    header = resp.headers.get("Link")
    if not header:
        return None
    match = re.search(r'<([^>]*)>\s*;\s*rel="?next"?', header)
    assert match, f"malformed Link header: {header!r}"
    return resolve(base, match.group(1))


@dataclass
class RepoState:
    """What a test needs to prove a bad request changed nothing."""

    tags: list[str] | None
    manifests: dict[str, bytes]
    blobs: dict[str, bytes]


def snapshot(base: str, repo: str, manifests: Iterable[str] = (),
             blobs: Iterable[str] = ()) -> RepoState:
    found: dict[str, bytes] = {}
    for ref in manifests:
        resp = get_manifest(base, repo, ref)
        found[ref] = resp.content if resp.status_code == 200 else b"<%d>" % resp.status_code
    present: dict[str, bytes] = {}
    for digest in blobs:
        resp = get_blob(base, repo, digest)
        present[digest] = resp.content if resp.status_code == 200 else b"<%d>" % resp.status_code
    tags = tags_of(base, repo)
    return RepoState(sorted(tags) if tags is not None else None, found, present)


def assert_unchanged(base: str, repo: str, before: RepoState) -> None:
    after = snapshot(base, repo, before.manifests, before.blobs)
    assert after.tags == before.tags, f"tags changed: {before.tags} -> {after.tags}"
    assert after.manifests == before.manifests, "a manifest changed"
    assert after.blobs == before.blobs, "a blob changed"
