"""Bad input: invalid names, tags, digests, ranges, sessions and manifest bodies.

Every test checks the status, the JSON error envelope and its code, that the server did not
answer 5xx, and that nothing stored changed (tags, manifests, blobs) and nothing new appeared.

Where the CNCF reference registry (distribution 2.8) answers differently, the spec text wins;
those places are marked. distribution routes requests with regular expressions, so names, tags
and digests that do not match its patterns get a plain-text "404 page not found" instead of the
NAME_INVALID / TAG_INVALID / DIGEST_INVALID errors the spec defines.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from ocihelpers import (
    DOCKER_MANIFEST,
    EXTERNAL,
    OCI_INDEX,
    OCI_MANIFEST,
    OCTET,
    STRICT,
    Manifest,
    RawResponse,
    add_query,
    assert_blob,
    assert_error,
    assert_manifest,
    assert_no_blob,
    assert_no_manifest,
    assert_not_5xx,
    assert_unchanged,
    build_image,
    build_index,
    encode,
    get_manifest,
    head_blob,
    location_of,
    next_link,
    open_upload,
    patch_chunk,
    push,
    push_blob,
    push_image,
    put_manifest,
    put_upload,
    random_bytes,
    raw_request,
    request,
    requires_cargohold,
    sha256,
    snapshot,
    start_upload,
    tags_of,
)

NAME_ERRORS = ("NAME_INVALID",)
UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN",) if STRICT else ("BLOB_UPLOAD_UNKNOWN",
                                                           "BLOB_UPLOAD_INVALID")
RANGE_ERRORS = ("BLOB_UPLOAD_INVALID", "SIZE_INVALID", "RANGE_INVALID")


@dataclass
class Populated:
    repo: str
    image: Manifest
    blob: str
    blob_data: bytes

    def refs(self) -> list[str]:
        return ["keep", self.image.digest]


@pytest.fixture
def populated(registry_url: str, repo: str) -> Populated:
    image = push_image(registry_url, repo, "keep")
    data = random_bytes(333)
    return Populated(repo, image, push_blob(registry_url, repo, data), data)


@pytest.fixture
def unchanged(registry_url: str, populated: Populated) -> Iterator[Populated]:
    """Snapshot the populated repository; after the test, prove nothing in it changed."""
    before = snapshot(registry_url, populated.repo, populated.refs(),
                      [populated.blob, *populated.image.blobs])
    yield populated
    assert_unchanged(registry_url, populated.repo, before)


def expect_rejected(resp: requests.Response | RawResponse, strict_status: int | tuple[int, ...],
                    codes: tuple[str, ...], external_status: tuple[int, ...] = (404,)) -> None:
    """Strictly: the given status and envelope. Against distribution: also its plain 404."""
    assert_not_5xx(resp)
    if STRICT or resp.status_code not in external_status:
        assert_error(resp, strict_status, codes)


def catalog(base: str) -> list[str]:
    seen: list[str] = []
    url: str | None = f"{base}/v2/_catalog?n=1000"
    for _ in range(1000):  # bounded
        if url is None:
            break
        resp = request("GET", url)
        assert resp.status_code == 200
        seen += resp.json()["repositories"]
        url = next_link(base, resp)
    return seen


# ----------------------------------------------------------------------------- names

def _ref_diverges(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(EXTERNAL, reason=f"reference registry diverges: {reason}")


INVALID_NAMES = [
    pytest.param("Upper/case", marks=_ref_diverges("opens an upload session for it")),
    "UPPERCASE",
    "-leading-dash",
    "trailing-dash-",
    "a/-b",
    "a-/b",
    ".dot",
    "dot./x",
    "a..b",
    "a___b",
    "a_-b",
    pytest.param("a//b", marks=_ref_diverges("301 to the cleaned path")),
    pytest.param("trailing-slash/", marks=_ref_diverges("301 to the cleaned path")),
    "sp%20ace",
    "semi;colon",
    pytest.param("a" * 256, marks=_ref_diverges("500 UNKNOWN")),
    # 295 characters made of valid components
    pytest.param("/".join(["abcdefghijklmnopqrstuvwxyz0123456789"] * 8),
                 marks=_ref_diverges("500 UNKNOWN")),
]


@pytest.mark.parametrize("name", INVALID_NAMES, ids=lambda n: str(n)[:24])
def test_invalid_repository_names(registry_url: str, name: str,
                                  unchanged: Populated) -> None:
    # <name> MUST match [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
    # and stay below 256 characters; otherwise NAME_INVALID (code-8).
    image = unchanged.image
    calls: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", f"/v2/{name}/tags/list", None, {}),
        ("POST", f"/v2/{name}/blobs/uploads/", b"", {"Content-Length": "0"}),
        ("PUT", f"/v2/{name}/manifests/latest", image.body, {"Content-Type": OCI_MANIFEST}),
        ("GET", f"/v2/{name}/manifests/latest", None, {"Accept": OCI_MANIFEST}),
        ("GET", f"/v2/{name}/blobs/{unchanged.blob}", None, {}),
        ("GET", f"/v2/{name}/referrers/{image.digest}", None, {}),
    ]
    for method, path, body, headers in calls:
        resp = raw_request(registry_url, method, path, body, headers)
        expect_rejected(resp, 400, NAME_ERRORS)
        assert "Location" not in resp.headers, f"{method} {path} opened something"
    assert name not in catalog(registry_url)
    assert name.lower() not in catalog(registry_url)


@pytest.mark.parametrize("template", [
    "/v2/{a}/../{b}/tags/list",
    "/v2/{a}/%2e%2e/{b}/tags/list",
    "/v2/{a}/%2E%2E/%2e%2e/{b}/tags/list",
    "/v2/../{b}/tags/list",
    "/v2/{a}/..%2f{b}/tags/list",
    "/v2/{a}/./{b}/tags/list",
])
def test_path_traversal_in_names(registry_url: str, template: str,
                                 unchanged: Populated) -> None:
    # A dot segment is no valid name component: 400 NAME_INVALID, or (when the router never
    # matches the path) 404 NAME_UNKNOWN -- never success, never 5xx.
    a, b = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    path = template.format(a=a, b=b)
    for method in ("GET", "POST"):
        headers = {"Content-Length": "0"} if method == "POST" else {}
        target = path if method == "GET" else path.replace("/tags/list", "/blobs/uploads/")
        resp = raw_request(registry_url, method, target, b"" if method == "POST" else None,
                           headers)
        # distribution answers 301 with the dot segments removed
        expect_rejected(resp, (400, 404), ("NAME_INVALID", "NAME_UNKNOWN"), (301, 404))
        if STRICT:
            assert "Location" not in resp.headers
    seen = catalog(registry_url)
    assert not any(a in r or b in r for r in seen)


@pytest.mark.parametrize("name", ["a__b", "a---b", "a.b_c-d/e0/f.g", "0/1/2", "x" * 200])
def test_unusual_but_valid_names_work(registry_url: str, name: str) -> None:
    # The other side of the boundary: these all match the name grammar.
    full = f"{name}/{uuid.uuid4().hex[:8]}"
    image = push_image(registry_url, full, "v1")
    assert_manifest(registry_url, full, "v1", image)
    assert tags_of(registry_url, full) == ["v1"]


# ----------------------------------------------------------------------------- tags

INVALID_TAGS = ["a" * 129, ".dot", "-dash", "caf%C3%A9", "a+b", "tag%20space", "%2e%2e"]


@pytest.mark.parametrize("tag", INVALID_TAGS, ids=lambda t: t[:16])
def test_invalid_tags_are_rejected(registry_url: str, tag: str, unchanged: Populated) -> None:
    # A tag MUST match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
    fresh = build_image(registry_url, unchanged.repo)  # blobs pushed, manifest new
    resp = raw_request(registry_url, "PUT", f"/v2/{unchanged.repo}/manifests/{tag}",
                       fresh.body, {"Content-Type": OCI_MANIFEST})
    expect_rejected(resp, 400, ("TAG_INVALID", "MANIFEST_INVALID"), (301, 404))
    assert_no_manifest(registry_url, unchanged.repo, fresh.digest)


def test_longest_valid_tag_is_accepted(registry_url: str, repo: str) -> None:
    tag = "_" + "a.b-c" * 25 + "xx"
    assert len(tag) == 128
    image = push_image(registry_url, repo, tag)
    assert_manifest(registry_url, repo, tag, image)
    assert tags_of(registry_url, repo) == [tag]


# ----------------------------------------------------------------------------- digests

BAD_DIGESTS = [
    "sha256:xyz",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256",
    "sha256:",
    ":" + "a" * 64,
    "sha512:" + "a" * 64,
]
UNSUPPORTED_DIGESTS = ["md5:" + "a" * 32, "foo:" + "a" * 64]
# "sha256" alone is a valid tag, so it is no bad digest for /manifests/<reference>
BAD_REFERENCE_DIGESTS = [d for d in BAD_DIGESTS + UNSUPPORTED_DIGESTS if ":" in d]


@pytest.mark.parametrize("digest", BAD_DIGESTS + UNSUPPORTED_DIGESTS, ids=lambda d: d[:14])
def test_malformed_digest_on_blob_endpoints(registry_url: str, digest: str,
                                            unchanged: Populated) -> None:
    repo = unchanged.repo
    for method in ("GET", "DELETE"):
        resp = raw_request(registry_url, method, f"/v2/{repo}/blobs/{digest}")
        expect_rejected(resp, (400, 404), ("DIGEST_INVALID", "BLOB_UNKNOWN", "UNSUPPORTED"))
        if resp.status_code == 400:
            assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"))
    head = raw_request(registry_url, "HEAD", f"/v2/{repo}/blobs/{digest}")
    assert head.status_code in (400, 404)


@requires_cargohold  # distribution 2.8 answers 500 for "sha256:<non-hex>" manifest references
@pytest.mark.parametrize("digest", BAD_REFERENCE_DIGESTS, ids=lambda d: d[:14])
def test_malformed_digest_on_manifest_endpoints(registry_url: str, digest: str,
                                                unchanged: Populated) -> None:
    # Conformance "invalid-digest-format": PUT sha256:baddigeststring -> 400; GET -> 404 or 400.
    repo = unchanged.repo
    fresh = build_image(registry_url, repo)
    resp = raw_request(registry_url, "PUT", f"/v2/{repo}/manifests/{digest}", fresh.body,
                       {"Content-Type": OCI_MANIFEST})
    assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED", "TAG_INVALID"))
    for method in ("GET", "DELETE"):
        resp = raw_request(registry_url, method, f"/v2/{repo}/manifests/{digest}",
                           headers={"Accept": OCI_MANIFEST})
        assert_error(resp, (400, 404), ("DIGEST_INVALID", "MANIFEST_UNKNOWN", "UNSUPPORTED",
                                        "TAG_INVALID"))
    assert_no_manifest(registry_url, repo, fresh.digest)


@requires_cargohold  # distribution 2.8 answers 500 UNKNOWN
def test_conformance_baddigeststring(registry_url: str, unchanged: Populated) -> None:
    repo = unchanged.repo
    fresh = build_image(registry_url, repo)
    resp = put_manifest(registry_url, repo, "sha256:baddigeststring", fresh.body, OCI_MANIFEST)
    assert_error(resp, 400, "DIGEST_INVALID")
    resp = get_manifest(registry_url, repo, "sha256:baddigeststring")
    assert_error(resp, (400, 404), ("DIGEST_INVALID", "MANIFEST_UNKNOWN"))
    assert_no_manifest(registry_url, repo, fresh.digest)


@pytest.mark.parametrize("path", [
    "/v2/{repo}/blobs/../../etc/passwd",
    "/v2/{repo}/blobs/..%2f..%2f..%2fetc%2fpasswd",
    "/v2/{repo}/blobs/sha256:..%2f..%2fetc%2fpasswd",
    "/v2/{repo}/manifests/..%2f..%2fetc%2fpasswd",
    "/v2/{repo}/blobs/uploads/..%2f..%2fetc%2fpasswd",
    "/v2/{repo}/referrers/..%2f..%2fetc%2fpasswd",
])
def test_traversal_in_digest_and_session_paths(registry_url: str, path: str,
                                               unchanged: Populated) -> None:
    resp = raw_request(registry_url, "GET", path.format(repo=unchanged.repo))
    assert_not_5xx(resp)
    assert b"root:" not in resp.content
    if STRICT or resp.status_code not in (301, 404):  # distribution: 301 to the cleaned path
        assert_error(resp, (400, 404), ("DIGEST_INVALID", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN",
                                        "BLOB_UPLOAD_UNKNOWN", "NAME_UNKNOWN", "NAME_INVALID",
                                        "TAG_INVALID"))


@pytest.mark.parametrize("digest", [*BAD_DIGESTS, *UNSUPPORTED_DIGESTS, "../../etc/passwd"],
                         ids=lambda d: d[:14])
def test_malformed_digest_on_upload_put(registry_url: str, digest: str,
                                        unchanged: Populated) -> None:
    data = random_bytes(64)
    url = open_upload(registry_url, unchanged.repo)
    resp = put_upload(url, digest, data)
    assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"))
    assert_no_blob(registry_url, unchanged.repo, sha256(data))


@pytest.mark.parametrize("digest", [*BAD_DIGESTS, "../../etc/passwd"], ids=lambda d: d[:14])
def test_malformed_digest_on_single_post(registry_url: str, digest: str,
                                         unchanged: Populated) -> None:
    # end-4b failure: 400. distribution ignores a digest it cannot parse and opens a session.
    data = random_bytes(64)
    resp = request("POST", add_query(f"{registry_url}/v2/{unchanged.repo}/blobs/uploads/",
                                     [("digest", digest)]),
                   data=data, headers={"Content-Type": OCTET})
    expect_rejected(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"), external_status=(202,))
    assert_no_blob(registry_url, unchanged.repo, sha256(data))


@pytest.mark.parametrize("digest", ["sha256:xyz", "../../etc/passwd", "md5:" + "a" * 32])
def test_malformed_mount_digest(registry_url: str, digest: str, unchanged: Populated) -> None:
    # Either refuse the parameter (400 DIGEST_INVALID) or fall back to a plain upload session
    # (202), which must then work normally.
    resp = start_upload(registry_url, unchanged.repo, mount=digest, **{"from": unchanged.repo})
    assert_not_5xx(resp)
    if resp.status_code == 202:
        data = random_bytes(40)
        final = put_upload(location_of(registry_url, resp), sha256(data), data)
        assert final.status_code == 201
        assert request("DELETE", f"{registry_url}/v2/{unchanged.repo}/blobs/{sha256(data)}"
                       ).status_code == 202
    else:
        assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"))


# ----------------------------------------------------------------------------- Content-Range

def _session_with(registry_url: str, repo: str, data: bytes) -> str:
    url = open_upload(registry_url, repo)
    resp = patch_chunk(url, data, start=0)
    assert resp.status_code == 202
    return location_of(registry_url, resp)


def _finish_and_check(registry_url: str, repo: str, url: str, uploaded: bytes) -> None:
    """The session still holds exactly ``uploaded``; completing it stores the right blob."""
    status = request("GET", url)
    assert status.status_code == 204
    assert status.headers.get("Range") == f"0-{len(uploaded) - 1}"
    tail = random_bytes(10)
    resp = patch_chunk(location_of(registry_url, status), tail, start=len(uploaded))
    assert resp.status_code == 202
    whole = uploaded + tail
    final = put_upload(location_of(registry_url, resp), sha256(whole))
    assert final.status_code == 201
    assert_blob(registry_url, repo, sha256(whole), whole)


@requires_cargohold  # distribution 2.8 does not look at Content-Range at all
@pytest.mark.parametrize("content_range", [
    # ("bytes 100-109/*", the RFC 9110 form, is left out: accepting it is harmless leniency)
    "bytes=100-109", "abc", "100-", "-109", "100-109,110-119", "100--109", "0x64-0x6d",
    "100 - 109", "+100-109",
])
def test_malformed_content_range(registry_url: str, content_range: str,
                                 unchanged: Populated) -> None:
    # The range "MUST match ^[0-9]+-[0-9]+$".
    first = random_bytes(100)
    url = _session_with(registry_url, unchanged.repo, first)
    chunk = random_bytes(10)
    resp = patch_chunk(url, chunk, content_range=content_range)
    assert_error(resp, (400, 416), RANGE_ERRORS)
    assert_no_blob(registry_url, unchanged.repo, sha256(first + chunk))
    _finish_and_check(registry_url, unchanged.repo, url, first)


@requires_cargohold  # distribution 2.8 does not look at Content-Range at all
@pytest.mark.parametrize(("label", "start", "size", "claimed_end"), [
    ("overlap", 50, 100, 149),        # re-sends bytes 50..99
    ("restart", 0, 100, 99),          # the first chunk again
    ("gap", 150, 10, 159),            # skips bytes 100..149
    ("reversed", 110, 10, 100),       # end before start
    ("truncated", 100, 50, 199),      # range says 100 bytes, body has 50
    ("too-long", 100, 50, 119),       # range says 20 bytes, body has 50
])
def test_inconsistent_content_range(registry_url: str, label: str, start: int, size: int,
                                    claimed_end: int, unchanged: Populated) -> None:
    first = random_bytes(100)
    url = _session_with(registry_url, unchanged.repo, first)
    chunk = random_bytes(size)
    resp = patch_chunk(url, chunk, content_range=f"{start}-{claimed_end}")
    assert_error(resp, (400, 416), RANGE_ERRORS)
    if label in ("overlap", "restart", "gap"):
        # "If a chunk is uploaded out of order, the registry MUST respond with a 416".
        assert resp.status_code == 416
    _finish_and_check(registry_url, unchanged.repo, url, first)


@requires_cargohold  # distribution 2.8 does not look at Content-Range at all
def test_content_range_on_final_put_must_match(registry_url: str,
                                               unchanged: Populated) -> None:
    first = random_bytes(100)
    url = _session_with(registry_url, unchanged.repo, first)
    tail = random_bytes(30)
    whole = first + tail
    resp = put_upload(url, sha256(whole), tail, headers={"Content-Range": "100-200"})
    assert_error(resp, (400, 416), RANGE_ERRORS)
    assert_no_blob(registry_url, unchanged.repo, sha256(whole))


# ----------------------------------------------------------------------------- sessions

@pytest.mark.parametrize("session", [
    str(uuid.uuid4()), "not-a-uuid", "a" * 300, "%2e%2e", "..%2f..%2fetc", "0",
])
def test_bogus_upload_session(registry_url: str, session: str, unchanged: Populated) -> None:
    base = f"/v2/{unchanged.repo}/blobs/uploads/{session}"
    data = b"some bytes"
    calls: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", base, None, {}),
        ("PATCH", base, data, {"Content-Type": OCTET, "Content-Range": "0-9"}),
        ("PUT", f"{base}?digest={sha256(data)}", data, {"Content-Type": OCTET}),
        ("DELETE", base, None, {}),
    ]
    for method, path, body, headers in calls:
        resp = raw_request(registry_url, method, path, body, headers)
        assert_not_5xx(resp)
        if STRICT or resp.status_code not in (301, 404) or "json" in resp.headers.get(
                "Content-Type", ""):
            assert_error(resp, (400, 404), (*UPLOAD_UNKNOWN, "BLOB_UPLOAD_INVALID"))
            if session.count("-") == 4:  # a well-formed id that was never issued
                assert_error(resp, 404, UPLOAD_UNKNOWN)
    assert_no_blob(registry_url, unchanged.repo, sha256(data))


def test_upload_session_is_bound_to_its_repository(registry_url: str,
                                                   unchanged: Populated) -> None:
    url = open_upload(registry_url, unchanged.repo)
    other = unchanged.repo + "-other"
    push_blob(registry_url, other, random_bytes(5))
    hijacked = url.replace(f"/v2/{unchanged.repo}/", f"/v2/{other}/", 1)
    assert hijacked != url
    data = random_bytes(50)
    resp = put_upload(hijacked, sha256(data), data)
    assert_error(resp, (400, 404), (*UPLOAD_UNKNOWN, "BLOB_UPLOAD_INVALID"))
    assert head_blob(registry_url, other, sha256(data)).status_code == 404
    assert head_blob(registry_url, unchanged.repo, sha256(data)).status_code == 404
    # the genuine session still works
    final = put_upload(url, sha256(data), data)
    assert final.status_code == 201
    assert request("DELETE", f"{registry_url}/v2/{unchanged.repo}/blobs/{sha256(data)}"
                   ).status_code == 202


# ----------------------------------------------------------------------------- manifest bodies

def _image_doc(populated: Populated) -> dict[str, Any]:
    return populated.image.json


def _mutations() -> list[Any]:
    def drop(key: str) -> Any:
        def f(doc: dict[str, Any]) -> Any:
            doc.pop(key)
            return doc
        return f

    def setv(path: tuple[Any, ...], value: Any) -> Any:
        def f(doc: dict[str, Any]) -> Any:
            target: Any = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            return doc
        return f

    ref500 = _ref_diverges("answers 500 UNKNOWN")
    return [
        pytest.param(lambda d: b"this is not json", id="not-json"),
        pytest.param(lambda d: b"", id="empty-body"),
        pytest.param(lambda d: json.dumps(d).encode()[:-5], id="truncated-json"),
        pytest.param(lambda d: [d], id="json-array"),
        pytest.param(lambda d: "a string", id="json-string"),
        pytest.param(lambda d: None, id="json-null", marks=ref500),
        pytest.param(lambda d: 2, id="json-number"),
        pytest.param(drop("schemaVersion"), id="no-schemaVersion", marks=ref500),
        pytest.param(setv(("schemaVersion",), 1), id="schemaVersion-1", marks=ref500),
        pytest.param(setv(("schemaVersion",), "2"), id="schemaVersion-string"),
        pytest.param(drop("config"), id="no-config",
                     marks=_ref_diverges("400 DIGEST_INVALID + MANIFEST_BLOB_UNKNOWN")),
        pytest.param(setv(("config",), []), id="config-array"),
        pytest.param(setv(("config",), "sha256:abc"), id="config-string"),
        pytest.param(setv(("layers",), "x"), id="layers-string"),
        pytest.param(setv(("layers",), {"a": 1}), id="layers-object"),
        pytest.param(setv(("layers", 0), "x"), id="layer-string"),
        pytest.param(setv(("layers", 0, "size"), "12"), id="size-string"),
        pytest.param(setv(("config", "size"), -1), id="size-negative",
                     marks=_ref_diverges("accepts a negative size")),
        pytest.param(setv(("config", "size"), 1.5), id="size-float"),
        pytest.param(setv(("config", "digest"), 12), id="digest-number"),
        pytest.param(setv(("config", "mediaType"), 7), id="mediaType-number"),
        pytest.param(setv(("mediaType",), 7), id="top-mediaType-number"),
        pytest.param(setv(("annotations",), {"k": 1}), id="annotation-number"),
        pytest.param(setv(("annotations",), ["k"]), id="annotations-array"),
        pytest.param(setv(("subject",), "sha256:abc"), id="subject-string",
                     marks=_ref_diverges("ignores subject, accepts any value")),
    ]


@pytest.mark.parametrize("mutate", _mutations())
def test_invalid_manifest_bodies(registry_url: str, mutate: Any,
                                 unchanged: Populated) -> None:
    doc = _image_doc(unchanged)
    doc["annotations"] = {"org.example.nonce": uuid.uuid4().hex}  # make the body new
    out = mutate(doc)
    body = out if isinstance(out, bytes) else json.dumps(out).encode()
    for ref in ("keep", "fresh", sha256(body)):
        resp = put_manifest(registry_url, unchanged.repo, ref, body, OCI_MANIFEST)
        assert_error(resp, 400, "MANIFEST_INVALID")
    assert_no_manifest(registry_url, unchanged.repo, "fresh")
    assert_no_manifest(registry_url, unchanged.repo, sha256(body))


def test_invalid_descriptor_digest(registry_url: str, unchanged: Populated) -> None:
    doc = _image_doc(unchanged)
    doc["layers"][0]["digest"] = "not-a-digest"
    body = encode(doc)
    resp = put_manifest(registry_url, unchanged.repo, "fresh", body, OCI_MANIFEST)
    assert_error(resp, 400, ("MANIFEST_INVALID", "DIGEST_INVALID"))
    assert_no_manifest(registry_url, unchanged.repo, "fresh")
    assert_no_manifest(registry_url, unchanged.repo, sha256(body))


def test_invalid_index_bodies(registry_url: str, unchanged: Populated) -> None:
    good = build_index([unchanged.image]).json
    bad_docs = []
    for field_value in ("x", {"a": 1}, ["x"], [{"mediaType": OCI_MANIFEST, "size": 1}]):
        doc = dict(good)
        doc["manifests"] = field_value
        bad_docs.append(doc)
    no_manifests = dict(good)
    no_manifests.pop("manifests")
    bad_docs.append(no_manifests)
    for doc in bad_docs:
        body = encode(doc)
        resp = put_manifest(registry_url, unchanged.repo, "fresh-index", body, OCI_INDEX)
        if STRICT or resp.status_code != 201:
            assert_error(resp, 400, ("MANIFEST_INVALID", "DIGEST_INVALID"))
        else:  # distribution 2.8 accepts an index without "manifests"
            assert doc is no_manifests
            assert request("DELETE", f"{registry_url}/v2/{unchanged.repo}/manifests/"
                           f"{sha256(body)}").status_code == 202
        assert_no_manifest(registry_url, unchanged.repo, "fresh-index")


@pytest.mark.parametrize(("body_type", "header_type"), [
    (OCI_MANIFEST, OCI_INDEX),
    (OCI_MANIFEST, DOCKER_MANIFEST),
    (OCI_INDEX, OCI_MANIFEST),
    (DOCKER_MANIFEST, OCI_MANIFEST),
])
def test_media_type_mismatch(registry_url: str, body_type: str, header_type: str,
                             unchanged: Populated) -> None:
    # "If a manifest includes a mediaType field, clients MUST set Content-Type to exactly that
    # value"; a registry receiving a different one rejects the manifest as MANIFEST_INVALID.
    if body_type == OCI_INDEX:
        body = build_index([unchanged.image]).body
    else:
        doc = _image_doc(unchanged)
        doc["mediaType"] = body_type
        doc["annotations"] = {"org.example.nonce": uuid.uuid4().hex}
        body = encode(doc)
    resp = put_manifest(registry_url, unchanged.repo, "mismatch", body, header_type)
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_no_manifest(registry_url, unchanged.repo, "mismatch")
    assert_no_manifest(registry_url, unchanged.repo, sha256(body))


def test_content_type_parameters_are_ignored(registry_url: str, repo: str) -> None:
    # "Registries SHOULD ignore any parameters" on the Content-Type header.
    image = build_image(registry_url, repo)
    resp = put_manifest(registry_url, repo, "params", image.body,
                        f"{OCI_MANIFEST}; charset=utf-8")
    assert resp.status_code == 201
    assert_manifest(registry_url, repo, "params", image)


def test_failed_push_leaves_previous_tag_target(registry_url: str,
                                                unchanged: Populated) -> None:
    # A rejected re-push of an existing tag must not move or damage it.
    missing = build_image(registry_url, unchanged.repo, push_blobs=False)
    resp = put_manifest(registry_url, unchanged.repo, "keep", missing.body, OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_manifest(registry_url, unchanged.repo, "keep", unchanged.image)
    push(registry_url, unchanged.repo, unchanged.image, "keep")  # idempotent re-push is fine
