"""OCI Distribution Spec v1.1: manifests with a subject and the referrers API (end-12a/12b).

The CNCF reference registry (distribution 2.8) has no referrers API and never answers
OCI-Subject, so most of this module only runs against Cargohold.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from ocihelpers import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    STRICT,
    Manifest,
    assert_error,
    assert_manifest,
    build_image,
    build_index,
    manifest_url,
    next_link,
    push,
    push_blob,
    push_image,
    put_manifest,
    request,
    requires_cargohold,
    unknown_digest,
)

TYPE_A = "application/vnd.example.sbom.v1"
TYPE_B = "application/vnd.example.signature.v1"
TYPE_CONFIG = "application/vnd.example.config-as-type.v1+json"
TYPE_INDEX = "application/vnd.example.index-artifact.v1"


def referrers(base: str, repo: str, digest: str, **params: str) -> requests.Response:
    return request("GET", f"{base}/v2/{repo}/referrers/{digest}", params=params or None)


def referrer_index(resp: requests.Response) -> list[dict[str, Any]]:
    """Check the response is a valid referrers index (conformance ReferrersList)."""
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    assert resp.headers.get("Content-Type") == OCI_INDEX
    body = resp.json()
    assert body.get("schemaVersion") == 2
    assert body.get("mediaType") == OCI_INDEX
    assert isinstance(body.get("manifests"), list)
    return body["manifests"]


def push_artifact(base: str, repo: str, subject: Manifest, artifact_type: str | None,
                  annotations: dict[str, str] | None = None,
                  config_media_type: str = OCI_EMPTY, ref: str | None = None) -> Manifest:
    push_blob(base, repo, EMPTY_JSON)
    config_data = EMPTY_JSON if config_media_type == OCI_EMPTY else b'{"a":1}'
    artifact = build_image(base, repo, config_media_type=config_media_type,
                           config_data=config_data, artifact_type=artifact_type,
                           layer_media_type="application/vnd.example.payload",
                           subject=subject.descriptor(), annotations=annotations)
    resp = put_manifest(base, repo, ref or artifact.digest, artifact.body, artifact.media_type)
    assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    if STRICT:
        # "OCI-Subject: <subject digest>" tells the client the registry processed the subject.
        assert resp.headers.get("OCI-Subject") == subject.digest
    artifact.response = resp
    return artifact


def expected_descriptor(manifest: Manifest, artifact_type: str | None) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                            "size": manifest.size}
    if artifact_type is not None:
        desc["artifactType"] = artifact_type
    annotations = manifest.json.get("annotations")
    if annotations:
        desc["annotations"] = annotations
    return desc


def by_digest(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {entry["digest"]: entry for entry in entries}
    assert len(out) == len(entries), f"duplicate referrers: {entries}"
    return out


def assert_entry(entry: dict[str, Any], want: dict[str, Any]) -> None:
    assert entry["mediaType"] == want["mediaType"]
    assert entry["size"] == want["size"]
    assert entry["digest"] == want["digest"]
    if "artifactType" in want:
        assert entry.get("artifactType") == want["artifactType"]
    else:
        # "If the referenced index has no artifactType, the descriptor's artifactType MUST be
        # omitted."
        assert "artifactType" not in entry, entry
    assert (entry.get("annotations") or {}) == want.get("annotations", {})


@pytest.fixture
def subject_with_referrers(registry_url: str, repo: str) -> dict[str, Any]:
    subject = push_image(registry_url, repo, "subject")
    a = push_artifact(registry_url, repo, subject, TYPE_A,
                      {"org.opencontainers.conformance": "test layer a", "x": "1"})
    b = push_artifact(registry_url, repo, subject, TYPE_B,
                      {"org.opencontainers.conformance": "test layer b"})
    # no artifactType: the descriptor's artifactType falls back to config.mediaType
    c = push_artifact(registry_url, repo, subject, None,
                      {"org.opencontainers.conformance": "test config c"},
                      config_media_type=TYPE_CONFIG)
    # an index with a subject and an artifactType
    children = [push_image(registry_url, repo) for _ in range(2)]
    d = build_index(children, artifact_type=TYPE_INDEX, subject=subject.descriptor(),
                    annotations={"org.opencontainers.conformance": "test index"})
    push(registry_url, repo, d)
    # an index with a subject and no artifactType
    e = build_index([children[0]], subject=subject.descriptor())
    push(registry_url, repo, e)
    return {
        "subject": subject,
        "expected": {
            a.digest: expected_descriptor(a, TYPE_A),
            b.digest: expected_descriptor(b, TYPE_B),
            c.digest: expected_descriptor(c, TYPE_CONFIG),
            d.digest: expected_descriptor(d, TYPE_INDEX),
            e.digest: expected_descriptor(e, None),
        },
        "manifests": {m.digest: m for m in (a, b, c, d, e)},
    }


@requires_cargohold
def test_put_with_subject_returns_oci_subject(registry_url: str, repo: str) -> None:
    subject = push_image(registry_url, repo, "subject")
    artifact = push_artifact(registry_url, repo, subject, TYPE_A)
    assert artifact.response is not None
    assert artifact.response.headers.get("OCI-Subject") == subject.digest
    assert artifact.response.headers.get("Docker-Content-Digest") == artifact.digest


@requires_cargohold
def test_index_with_subject_returns_oci_subject(registry_url: str, repo: str) -> None:
    subject = push_image(registry_url, repo)
    index = build_index([push_image(registry_url, repo)], artifact_type=TYPE_INDEX,
                        subject=subject.descriptor())
    resp = put_manifest(registry_url, repo, index.digest, index.body, index.media_type)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject.digest


@requires_cargohold
def test_list_referrers(registry_url: str, repo: str,
                        subject_with_referrers: dict[str, Any]) -> None:
    # "A successful response MUST return an OCI image index with Content-Type
    # application/vnd.oci.image.index.v1+json ... descriptors for all manifests in <name>
    # whose subject equals <digest>", each with mediaType/size/digest/artifactType/annotations.
    subject = subject_with_referrers["subject"]
    expected = subject_with_referrers["expected"]
    entries = by_digest(referrer_index(referrers(registry_url, repo, subject.digest)))
    assert set(entries) == set(expected)
    for digest, want in expected.items():
        assert_entry(entries[digest], want)


@requires_cargohold
@pytest.mark.parametrize("artifact_type", [TYPE_A, TYPE_CONFIG, TYPE_INDEX])
def test_filter_by_artifact_type(registry_url: str, repo: str,
                                 subject_with_referrers: dict[str, Any],
                                 artifact_type: str) -> None:
    # "If the registry applies the filter: the response MUST include OCI-Filters-Applied:
    # artifactType"; conformance then fails any entry of another type.
    subject = subject_with_referrers["subject"]
    expected = {d: w for d, w in subject_with_referrers["expected"].items()
                if w.get("artifactType") == artifact_type}
    resp = referrers(registry_url, repo, subject.digest, artifactType=artifact_type)
    entries = by_digest(referrer_index(resp))
    applied = [f.strip() for f in resp.headers.get("OCI-Filters-Applied", "").split(",")]
    assert "artifactType" in applied
    assert set(entries) == set(expected)
    for digest, want in expected.items():
        assert_entry(entries[digest], want)


@requires_cargohold
def test_filter_without_matches(registry_url: str, repo: str,
                                subject_with_referrers: dict[str, Any]) -> None:
    subject = subject_with_referrers["subject"]
    resp = referrers(registry_url, repo, subject.digest,
                     artifactType="application/vnd.example.nothing")
    assert referrer_index(resp) == []
    assert "artifactType" in resp.headers.get("OCI-Filters-Applied", "")


@requires_cargohold
def test_referrers_of_unknown_subject_is_empty(registry_url: str, repo: str) -> None:
    # "A registry that supports the referrers API MUST NOT return 404 ... If no referrers
    # exist, the registry MUST return an image index with an empty manifests list."
    push_image(registry_url, repo, "something")
    resp = referrers(registry_url, repo, unknown_digest())
    assert referrer_index(resp) == []
    assert "Link" not in resp.headers


@requires_cargohold
def test_referrers_in_repository_without_content(registry_url: str, repo: str) -> None:
    # Conformance TestEmptyReferrers queries a repository before anything was pushed to it and
    # requires 200 with a valid (empty) index.
    assert referrer_index(referrers(registry_url, repo, unknown_digest())) == []


@requires_cargohold
@pytest.mark.parametrize("digest", ["sha256:xyz", "sha256:" + "a" * 63, "notadigest",
                                    "sha256:" + "A" * 64])
def test_referrers_with_invalid_digest_is_400(registry_url: str, repo: str,
                                              digest: str) -> None:
    # "If the request is invalid (for example, <digest> has invalid syntax), the registry MUST
    # return 400 Bad Request."
    push_image(registry_url, repo, "something")
    assert_error(referrers(registry_url, repo, digest), 400, "DIGEST_INVALID")


def test_referrer_pushed_before_subject(registry_url: str, repo: str) -> None:
    # "A registry MUST accept a manifest that includes a subject field referencing another
    # manifest that does not yet exist"; conformance "missing-subject" also wants OCI-Subject.
    subject = build_image(registry_url, repo)  # blobs pushed, manifest not yet
    artifact = push_artifact(registry_url, repo, subject, TYPE_A, {"k": "v"})
    assert_manifest(registry_url, repo, artifact.digest, artifact)
    if STRICT:
        entries = by_digest(referrer_index(referrers(registry_url, repo, subject.digest)))
        assert set(entries) == {artifact.digest}
        assert_entry(entries[artifact.digest], expected_descriptor(artifact, TYPE_A))
    push(registry_url, repo, subject, "late-subject")
    if STRICT:
        entries = by_digest(referrer_index(referrers(registry_url, repo, subject.digest)))
        assert set(entries) == {artifact.digest}


def test_referrer_to_a_subject_that_never_exists(registry_url: str, repo: str) -> None:
    ghost = Manifest(b'{"schemaVersion":2}', OCI_MANIFEST)
    ghost_desc = ghost.descriptor(digest=unknown_digest(), size=123)
    push_blob(registry_url, repo, EMPTY_JSON)
    artifact = build_image(registry_url, repo, config_media_type=OCI_EMPTY,
                           config_data=EMPTY_JSON, artifact_type=TYPE_B, subject=ghost_desc)
    resp = put_manifest(registry_url, repo, "tagged-artifact", artifact.body,
                        artifact.media_type)
    assert resp.status_code == 201
    if STRICT:
        assert resp.headers.get("OCI-Subject") == ghost_desc["digest"]
        entries = by_digest(referrer_index(referrers(registry_url, repo, ghost_desc["digest"])))
        assert set(entries) == {artifact.digest}
    assert_manifest(registry_url, repo, "tagged-artifact", artifact)


@requires_cargohold
def test_deleted_referrer_disappears(registry_url: str, repo: str,
                                     subject_with_referrers: dict[str, Any]) -> None:
    subject = subject_with_referrers["subject"]
    expected = dict(subject_with_referrers["expected"])
    victim = next(d for d, w in expected.items() if w.get("artifactType") == TYPE_A)
    resp = request("DELETE", manifest_url(registry_url, repo, victim))
    assert resp.status_code == 202
    del expected[victim]
    entries = by_digest(referrer_index(referrers(registry_url, repo, subject.digest)))
    assert set(entries) == set(expected)
    filtered = referrer_index(referrers(registry_url, repo, subject.digest, artifactType=TYPE_A))
    assert filtered == []


@requires_cargohold
def test_referrers_are_per_repository(registry_url: str, repo: str) -> None:
    subject = push_image(registry_url, repo, "subject")
    other = repo + "-other"
    for data in subject.blobs.values():
        push_blob(registry_url, other, data)
    push(registry_url, other, Manifest(subject.body, subject.media_type), "subject")
    artifact = push_artifact(registry_url, repo, subject, TYPE_A)
    assert by_digest(referrer_index(referrers(registry_url, repo, subject.digest))).keys() == {
        artifact.digest}
    assert referrer_index(referrers(registry_url, other, subject.digest)) == []


@requires_cargohold
def test_tagged_referrer_keeps_tag_and_listing(registry_url: str, repo: str) -> None:
    # Conformance "tagged-artifact1": a referrer can also carry a tag.
    subject = push_image(registry_url, repo, "image")
    artifact = push_artifact(registry_url, repo, subject, TYPE_A, {"k": "tagged"},
                             ref="tagged-artifact1")
    assert_manifest(registry_url, repo, "tagged-artifact1", artifact)
    entries = by_digest(referrer_index(referrers(registry_url, repo, subject.digest)))
    assert set(entries) == {artifact.digest}


@requires_cargohold
def test_referrers_pagination_follows_link(registry_url: str, repo: str) -> None:
    # "If the registry cannot return all descriptors in a single response, it MUST include a
    # Link header (RFC 5988, rel="next")"; every page is a valid index.
    subject = push_image(registry_url, repo, "subject")
    expected = {push_artifact(registry_url, repo, subject, TYPE_A, {"n": str(i)}).digest
                for i in range(30)}
    seen: list[str] = []
    resp = referrers(registry_url, repo, subject.digest)
    for _ in range(len(expected) + 1):  # bounded: at most one page per referrer
        seen += [entry["digest"] for entry in referrer_index(resp)]
        url = next_link(registry_url, resp)
        if url is None:
            break
        resp = request("GET", url)
    else:
        pytest.fail("referrers pagination did not end")
    assert sorted(seen) == sorted(expected)
