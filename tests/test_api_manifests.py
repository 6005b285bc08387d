"""OCI Distribution Spec v1.1: pushing, pulling and deleting manifests (end-3, end-7, end-9)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from ocihelpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_ND_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    STRICT,
    Manifest,
    assert_error,
    assert_manifest,
    assert_no_manifest,
    build_image,
    build_index,
    descriptor,
    encode,
    get_manifest,
    location_of,
    manifest_url,
    push,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    request,
    requires_cargohold,
    sha256,
    sha512,
    tags_of,
    unknown_digest,
)

MIB4 = 4 * 1024 * 1024


# ----------------------------------------------------------------------------- push + pull

@pytest.mark.parametrize("by", ["tag", "digest"])
def test_put_manifest_returns_201_location_and_digest(registry_url: str, repo: str,
                                                      by: str) -> None:
    # end-7: "The registry MUST return 201 Created ... MUST include Location ... The
    # Docker-Content-Digest header MUST contain the digest of the uploaded manifest".
    image = build_image(registry_url, repo)
    ref = "v1" if by == "tag" else image.digest
    resp = put_manifest(registry_url, repo, ref, image.body, image.media_type)
    assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    assert resp.headers.get("Docker-Content-Digest") == image.digest
    # Conformance ManifestPut: GET <Location> returns the manifest with its type and length.
    pulled = request("GET", location_of(registry_url, resp),
                     headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
    assert pulled.status_code == 200
    assert pulled.content == image.body
    assert pulled.headers.get("Content-Type") == image.media_type
    assert pulled.headers.get("Content-Length") == str(image.size)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_pull_by_tag_and_digest_headers(registry_url: str, repo: str, method: str) -> None:
    # end-3: 200, Content-Type = the manifest's mediaType (exact, conformance compares the whole
    # header), Content-Length, Docker-Content-Digest (MUST on main); HEAD has no body.
    image = push_image(registry_url, repo, "latest")
    for ref in ("latest", image.digest):
        resp = get_manifest(registry_url, repo, ref, method=method)
        assert resp.status_code == 200
        assert resp.headers.get("Content-Type") == OCI_MANIFEST
        assert resp.headers.get("Content-Length") == str(image.size)
        assert resp.headers.get("Docker-Content-Digest") == image.digest
        etag = resp.headers.get("ETag")
        assert etag, "manifest responses carry an ETag"
        assert image.digest in etag
        assert resp.content == (image.body if method == "GET" else b"")


def test_conditional_get_with_etag(registry_url: str, repo: str) -> None:
    # RFC 9110 13.1.2: an origin server that sends ETags MUST evaluate If-None-Match and answer
    # 304 to a GET whose entity tag matches.
    image = push_image(registry_url, repo, "cond")
    etag = get_manifest(registry_url, repo, "cond").headers.get("ETag")
    assert etag
    resp = request("GET", manifest_url(registry_url, repo, "cond"),
                   headers={"Accept": OCI_MANIFEST, "If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.content == b""
    assert image.digest in (resp.headers.get("ETag") or etag)


def test_bytes_are_returned_exactly_as_pushed(registry_url: str, repo: str) -> None:
    # "The registry MUST store the manifest exactly as provided, without modification of its
    # byte representation": odd whitespace, key order, escapes and a trailing newline survive.
    image = build_image(registry_url, repo)
    doc = image.json
    body = (
        '{  "layers" :[ ' + json.dumps(doc["layers"][0], indent=7) + "],\r\n"
        '\t"config":' + json.dumps(doc["config"], separators=(",", ":")) + ",\n\n"
        '"annotations": {"z": "\\u00e9\\/", "a": "\u00e9"},'
        '   "mediaType": "' + OCI_MANIFEST + '",   "schemaVersion":2 }\n\n'
    ).encode()
    manifest = Manifest(body, OCI_MANIFEST)
    push(registry_url, repo, manifest, "weird")
    assert_manifest(registry_url, repo, "weird", manifest)
    assert_manifest(registry_url, repo, manifest.digest, manifest)


def test_unknown_manifest_is_404(registry_url: str, repo: str) -> None:
    push_image(registry_url, repo, "exists")
    resp = get_manifest(registry_url, repo, "missing", method="HEAD")
    assert resp.status_code == 404
    assert resp.content == b""
    assert_error(get_manifest(registry_url, repo, "missing"), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(registry_url, repo, unknown_digest()), 404, "MANIFEST_UNKNOWN")


def test_conformance_nonexistent_manifest_name_is_404(registry_url: str, repo: str) -> None:
    # Both conformance generations GET and HEAD ".INVALID_MANIFEST_NAME" (not even a valid tag)
    # and require a plain 404 -- not 400.
    push_image(registry_url, repo, "exists")
    assert get_manifest(registry_url, repo, ".INVALID_MANIFEST_NAME",
                        method="HEAD").status_code == 404
    resp = get_manifest(registry_url, repo, ".INVALID_MANIFEST_NAME")
    if STRICT:
        assert_error(resp, 404, ("MANIFEST_UNKNOWN", "TAG_INVALID"))
    else:
        assert resp.status_code == 404  # distribution: plain-text "404 page not found"


def test_manifest_without_layers(registry_url: str, repo: str) -> None:
    # "The manifest MUST reference all blobs ... though the list of blobs MAY be empty";
    # conformance "Registry should accept a manifest upload with no layers".
    image = build_image(registry_url, repo, layers=0)
    push(registry_url, repo, image, "nolayers")
    assert_manifest(registry_url, repo, "nolayers", image)


def test_manifest_without_media_type_field(registry_url: str, repo: str) -> None:
    # The old conformance pushes its "emptylayer" manifest with no mediaType field (only the
    # Content-Type header) and an unknown descriptor field plus "data"; it must be accepted and
    # served back with the Content-Type it was pushed with.
    image = build_image(registry_url, repo, layers=0)
    doc = image.json
    del doc["mediaType"]
    config_data = image.blobs[doc["config"]["digest"]]
    doc["config"]["data"] = base64.b64encode(config_data).decode()
    doc["config"]["newUnspecifiedField"] = "aGVsbG8gd29ybGQ="
    manifest = Manifest(encode(doc), OCI_MANIFEST)
    push(registry_url, repo, manifest, "emptylayer")
    assert_manifest(registry_url, repo, "emptylayer", manifest)


def test_custom_fields_are_kept(registry_url: str, repo: str) -> None:
    # Conformance "custom-fields": unknown top-level and descriptor fields are accepted and
    # round-trip unchanged.
    image = build_image(registry_url, repo)
    doc = image.json
    doc["x-custom-field"] = {"nested": [1, 2, 3]}
    doc["layers"][0]["x-custom"] = "yes"
    manifest = Manifest(encode(doc), OCI_MANIFEST)
    push(registry_url, repo, manifest, "custom")
    assert_manifest(registry_url, repo, "custom", manifest)


def test_large_manifest_under_4mib(registry_url: str, repo: str) -> None:
    # Conformance "large-manifest": 390 annotations of 10000 characters (~3.9 MB).
    annotations = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
    image = build_image(registry_url, repo, annotations=annotations)
    push(registry_url, repo, image, "large")
    assert_manifest(registry_url, repo, "large", image)


def _manifest_of_size(image: Manifest, size: int) -> Manifest:
    doc = image.json
    doc["annotations"] = {"org.example.padding": ""}
    doc["annotations"]["org.example.padding"] = "A" * (size - len(encode(doc)))
    body = encode(doc)
    assert len(body) == size
    return Manifest(body, image.media_type)


def test_manifest_of_exactly_4mib_is_accepted(registry_url: str, repo: str) -> None:
    # "Clients and registries SHOULD expect to support manifest uploads of at least 4 MiB";
    # 4194304 bytes is the ECR limit, inclusive.
    manifest = _manifest_of_size(build_image(registry_url, repo), MIB4)
    push(registry_url, repo, manifest, "fourmib")
    assert_manifest(registry_url, repo, "fourmib", manifest)


def test_manifest_over_4mib_is_413(registry_url: str, repo: str) -> None:
    # "If a manifest exceeds this limit, the registry SHOULD respond with 413 Payload Too
    # Large"; nothing may be stored.
    manifest = _manifest_of_size(build_image(registry_url, repo), MIB4 + 1)
    # The body is refused part-way. Behind a proxy that streams bodies (deploy/local's nginx,
    # in the multi-node run) the connection that answer came back on may be closed right
    # after it, with no way for the client to know: the checks below go on a new one.
    resp = put_manifest(registry_url, repo, "toobig", manifest.body, manifest.media_type,
                        headers={"Connection": "close"})
    if STRICT:
        assert_error(resp, 413, ("MANIFEST_INVALID", "SIZE_INVALID"))
    else:  # distribution 2.8 answers 400 MANIFEST_INVALID ("request body too large")
        assert_error(resp, (400, 413), ("MANIFEST_INVALID", "SIZE_INVALID"))
    assert_no_manifest(registry_url, repo, "toobig")
    assert_no_manifest(registry_url, repo, manifest.digest)


# ----------------------------------------------------------------------------- indexes

def test_image_index(registry_url: str, repo: str) -> None:
    images = [push_image(registry_url, repo) for _ in range(2)]
    index = build_index(images)
    push(registry_url, repo, index, "multi")
    assert_manifest(registry_url, repo, "multi", index)
    for image in images:
        assert_manifest(registry_url, repo, image.digest, image)


def test_nested_index(registry_url: str, repo: str) -> None:
    # Conformance "nested-index": an index of two indexes (depth 2), and one level deeper.
    inner = [build_index([push_image(registry_url, repo), push_image(registry_url, repo)])
             for _ in range(2)]
    for index in inner:
        push(registry_url, repo, index)
    outer = build_index(inner)
    push(registry_url, repo, outer, "index-of-index")
    outermost = build_index([outer])
    push(registry_url, repo, outermost, "depth-3")
    assert_manifest(registry_url, repo, "index-of-index", outer)
    assert_manifest(registry_url, repo, "depth-3", outermost)


def test_empty_index(registry_url: str, repo: str) -> None:
    index = build_index([])
    push(registry_url, repo, index, "empty-index")
    assert_manifest(registry_url, repo, "empty-index", index)


def test_artifact_index(registry_url: str, repo: str) -> None:
    push_blob(registry_url, repo, EMPTY_JSON)
    children = [push_image(registry_url, repo, config_media_type=OCI_EMPTY,
                           config_data=EMPTY_JSON,
                           artifact_type="application/vnd.example.oci.conformance.v1",
                           layer_media_type="application/vnd.example.oci.conformance.v1")
                for _ in range(2)]
    index = build_index(children, artifact_type="application/vnd.example.oci.conformance.v1")
    push(registry_url, repo, index, "artifact-index")
    assert_manifest(registry_url, repo, "artifact-index", index)


def test_index_referencing_missing_manifest_is_rejected(registry_url: str, repo: str) -> None:
    # "A registry MAY reject a manifest ... that reference[s] blobs or manifests that do not
    # exist ... it MUST return one or more MANIFEST_BLOB_UNKNOWN errors". Cargohold rejects.
    present = push_image(registry_url, repo)
    absent = build_image(registry_url, repo)  # blobs pushed, manifest not
    index = build_index([present, absent])
    resp = put_manifest(registry_url, repo, "sparse", index.body, index.media_type)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_no_manifest(registry_url, repo, "sparse")
    assert_no_manifest(registry_url, repo, index.digest)


# ----------------------------------------------------------------------------- other types

def test_docker_schema2_manifest_and_list(registry_url: str, repo: str) -> None:
    config = encode({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}, "id": uuid.uuid4().hex})
    layer = random_bytes(300)
    push_blob(registry_url, repo, config)
    push_blob(registry_url, repo, layer)
    manifest = Manifest(encode({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, layer)],
    }), DOCKER_MANIFEST)
    push(registry_url, repo, manifest, "docker")
    assert_manifest(registry_url, repo, "docker", manifest)
    manifest_list = build_index([manifest], media_type=DOCKER_MANIFEST_LIST)
    push(registry_url, repo, manifest_list, "docker-list")
    assert_manifest(registry_url, repo, "docker-list", manifest_list)


def test_helm_chart_config_media_type(registry_url: str, repo: str) -> None:
    chart = build_image(registry_url, repo,
                        config_media_type="application/vnd.cncf.helm.config.v1+json",
                        config_data=encode({"name": "mychart", "version": "0.1.0"}),
                        layer_media_type="application/vnd.cncf.helm.chart.content.v1.tar+gzip")
    push(registry_url, repo, chart, "0.1.0")
    assert_manifest(registry_url, repo, "0.1.0", chart)


@pytest.mark.parametrize("layer_bytes", [None, EMPTY_JSON], ids=["with-layer", "empty-layer"])
def test_artifact_with_artifact_type(registry_url: str, repo: str,
                                     layer_bytes: bytes | None) -> None:
    # Conformance "artifact" and "artifact-without-layers" (a single "{}" layer).
    push_blob(registry_url, repo, EMPTY_JSON)
    artifact_type = "application/vnd.example.oci.conformance.v1"
    if layer_bytes is None:
        artifact = push_image(registry_url, repo, "artifact", config_media_type=OCI_EMPTY,
                              config_data=EMPTY_JSON, artifact_type=artifact_type,
                              layer_media_type=artifact_type)
    else:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
               "config": descriptor(OCI_EMPTY, EMPTY_JSON),
               "layers": [descriptor(OCI_EMPTY, layer_bytes)]}
        artifact = push(registry_url, repo, Manifest(encode(doc), OCI_MANIFEST), "artifact")
    assert_manifest(registry_url, repo, "artifact", artifact)


def test_uncompressed_layers(registry_url: str, repo: str) -> None:
    image = push_image(registry_url, repo, "uncompressed", layer_media_type=OCI_LAYER_TAR,
                       layers=2)
    assert_manifest(registry_url, repo, "uncompressed", image)


def test_descriptor_data_field(registry_url: str, repo: str) -> None:
    # Conformance "data-field": descriptors carry the base64 "data" of their content.
    image = build_image(registry_url, repo)
    doc = image.json
    for desc in [doc["config"], *doc["layers"]]:
        desc["data"] = base64.b64encode(image.blobs[desc["digest"]]).decode()
    manifest = Manifest(encode(doc), OCI_MANIFEST)
    push(registry_url, repo, manifest, "data-field")
    assert_manifest(registry_url, repo, "data-field", manifest)


@requires_cargohold  # distribution 2.8 answers 500 for non-distributable layer URLs
def test_non_distributable_layers_need_not_be_pushed(registry_url: str, repo: str) -> None:
    # Conformance "non-distributable-layers" (enabled by default) pushes an image whose two
    # non-distributable layers, with urls, were never uploaded, and expects 201.
    image = build_image(registry_url, repo)
    doc = image.json
    for size in (123456, 12345):
        digest = sha256(random_bytes(256))
        doc["layers"].insert(0, {
            "mediaType": OCI_LAYER_ND_GZIP, "digest": digest, "size": size,
            "urls": ["https://store.example.com/blobs/sha256/" + digest.split(":")[1]],
        })
    manifest = Manifest(encode(doc), OCI_MANIFEST)
    push(registry_url, repo, manifest, "non-distributable-image")
    assert_manifest(registry_url, repo, "non-distributable-image", manifest)


@requires_cargohold  # distribution 2.8 cannot address manifests by sha512
def test_sha512_manifests(registry_url: str, repo: str) -> None:
    # Conformance "sha512": blobs, images and an index all addressed by sha512, pushed by digest.
    images = [push_image(registry_url, repo, algorithm="sha512") for _ in range(2)]
    index = build_index(images, algorithm="sha512")
    push(registry_url, repo, index)
    assert index.digest == sha512(index.body)
    for item in [*images, index]:
        assert_manifest(registry_url, repo, item.digest, item)
        head = get_manifest(registry_url, repo, item.digest, method="HEAD")
        assert head.status_code == 200
        assert head.headers.get("Docker-Content-Digest") == item.digest


# ----------------------------------------------------------------------------- rejections

@pytest.mark.parametrize("missing", ["layer", "config"])
def test_manifest_with_missing_blob_is_rejected(registry_url: str, repo: str,
                                                missing: str) -> None:
    # "When a manifest is rejected for this reason, it MUST result in one or more
    # MANIFEST_BLOB_UNKNOWN errors".
    image = build_image(registry_url, repo, push_blobs=False)
    doc = image.json
    for digest, data in image.blobs.items():
        is_config = digest == doc["config"]["digest"]
        if (missing == "config") != is_config:
            push_blob(registry_url, repo, data)
    resp = put_manifest(registry_url, repo, "incomplete", image.body, image.media_type)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_no_manifest(registry_url, repo, "incomplete")
    assert_no_manifest(registry_url, repo, image.digest)


def test_blob_of_other_repository_does_not_satisfy_manifest(registry_url: str,
                                                            repo: str) -> None:
    other = repo + "-other"
    image = build_image(registry_url, other)  # blobs live in `other` only
    resp = put_manifest(registry_url, repo, "borrowed", image.body, image.media_type)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_no_manifest(registry_url, repo, "borrowed")


def test_put_by_digest_with_other_body_is_digest_invalid(registry_url: str, repo: str) -> None:
    # Conformance "bad-digest-image": the manifest bytes plus two spaces, pushed under the
    # digest of the original bytes -> 400.
    image = build_image(registry_url, repo)
    resp = put_manifest(registry_url, repo, image.digest, image.body + b"  ", image.media_type)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_no_manifest(registry_url, repo, image.digest)
    assert_no_manifest(registry_url, repo, sha256(image.body + b"  "))


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"], ids=["syntax", "empty",
                                                                        "binary"])
def test_malformed_manifest_is_manifest_invalid(registry_url: str, repo: str,
                                                body: bytes) -> None:
    resp = put_manifest(registry_url, repo, "broken", body, OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_no_manifest(registry_url, repo, "broken")


# ----------------------------------------------------------------------------- tags

def test_tag_move(registry_url: str, repo: str) -> None:
    first = push_image(registry_url, repo, "stable")
    second = push_image(registry_url, repo, "stable")
    assert_manifest(registry_url, repo, "stable", second)
    # the old manifest is still there by digest
    assert_manifest(registry_url, repo, first.digest, first)
    assert tags_of(registry_url, repo) == ["stable"]


def test_same_manifest_many_tags(registry_url: str, repo: str) -> None:
    # Conformance "PUT should accept a manifest upload" pushes one manifest as test0..test3.
    image = build_image(registry_url, repo)
    for i in range(4):
        push(registry_url, repo, image, f"test{i}")
    for i in range(4):
        assert_manifest(registry_url, repo, f"test{i}", image)
    assert sorted(tags_of(registry_url, repo) or []) == [f"test{i}" for i in range(4)]


@requires_cargohold  # unreleased spec change (end-7b); distribution ignores ?tag=
def test_put_by_digest_with_tag_parameters_unreleased(registry_url: str, repo: str) -> None:
    # UNRELEASED SPEC CHANGE (distribution-spec main after v1.1.1):
    # PUT /v2/<name>/manifests/<digest>?tag=a&tag=b creates both tags and the response carries
    # OCI-Tag headers (conformance "tag-param": every tag must appear in some OCI-Tag value,
    # values may be comma-separated).
    image = build_image(registry_url, repo)
    resp = put_manifest(registry_url, repo, image.digest, image.body, image.media_type,
                        [("tag", "a"), ("tag", "b")])
    assert resp.status_code == 201
    assert resp.headers.get("Docker-Content-Digest") == image.digest
    announced = {value.strip() for header in resp.raw.headers.getlist("OCI-Tag")
                 for value in header.split(",")}
    assert {"a", "b"} <= announced, announced
    for tag in ("a", "b"):
        assert_manifest(registry_url, repo, tag, image)


@requires_cargohold  # unreleased spec change; sha512 needs tag parameters to get a tag
def test_sha512_manifest_with_tag_parameter_unreleased(registry_url: str, repo: str) -> None:
    # UNRELEASED SPEC CHANGE: conformance "tag-param-sha512".
    image = build_image(registry_url, repo, algorithm="sha512")
    resp = put_manifest(registry_url, repo, image.digest, image.body, image.media_type,
                        [("tag", "tag-param-sha512")])
    assert resp.status_code == 201
    assert "tag-param-sha512" in {v.strip() for h in resp.raw.headers.getlist("OCI-Tag")
                                  for v in h.split(",")}
    assert_manifest(registry_url, repo, "tag-param-sha512", image)


# ----------------------------------------------------------------------------- delete

def test_delete_by_digest_removes_manifest_and_its_tags(registry_url: str, repo: str) -> None:
    # end-9: 202; "Once deleted, a GET to /v2/<name>/manifests/<digest> and any tag pointing to
    # that digest will return a 404"; conformance: the tag list reflects the deletion.
    image = build_image(registry_url, repo)
    for tag in ("one", "two"):
        push(registry_url, repo, image, tag)
    keep = push_image(registry_url, repo, "keep")
    resp = request("DELETE", manifest_url(registry_url, repo, image.digest))
    assert resp.status_code == 202
    for ref in (image.digest, "one", "two"):
        assert_no_manifest(registry_url, repo, ref)
    assert tags_of(registry_url, repo) == ["keep"]
    assert_manifest(registry_url, repo, "keep", keep)


@requires_cargohold  # distribution 2.8 refuses tag deletion with 400 DIGEST_INVALID
def test_delete_by_tag_keeps_manifest(registry_url: str, repo: str) -> None:
    # "To delete a tag ... Upon success, the registry MUST respond with a 202 Accepted code ...
    # Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
    image = build_image(registry_url, repo)
    push(registry_url, repo, image, "gone")
    push(registry_url, repo, image, "stays")
    resp = request("DELETE", manifest_url(registry_url, repo, "gone"))
    assert resp.status_code == 202
    assert_no_manifest(registry_url, repo, "gone")
    assert_manifest(registry_url, repo, image.digest, image)
    assert_manifest(registry_url, repo, "stays", image)
    assert tags_of(registry_url, repo) == ["stays"]


def test_delete_unknown_manifest_is_404(registry_url: str, repo: str) -> None:
    push_image(registry_url, repo, "exists")
    resp = request("DELETE", manifest_url(registry_url, repo, unknown_digest()))
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


@requires_cargohold  # distribution 2.8 refuses tag deletion with 400 DIGEST_INVALID
def test_delete_unknown_tag_is_404(registry_url: str, repo: str) -> None:
    push_image(registry_url, repo, "exists")
    resp = request("DELETE", manifest_url(registry_url, repo, "never-was"))
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_manifest_can_be_pushed_again_after_delete(registry_url: str, repo: str) -> None:
    image = push_image(registry_url, repo, "again")
    assert request("DELETE", manifest_url(registry_url, repo, image.digest)).status_code == 202
    assert_no_manifest(registry_url, repo, "again")
    push(registry_url, repo, image, "again")
    assert_manifest(registry_url, repo, "again", image)


def test_manifests_are_per_repository(registry_url: str, repo: str) -> None:
    image = push_image(registry_url, repo, "mine")
    other = repo + "-other"
    push_image(registry_url, other, "theirs")
    assert_no_manifest(registry_url, other, image.digest)
    assert_no_manifest(registry_url, other, "mine")


def test_config_media_type_is_not_restricted(registry_url: str, repo: str) -> None:
    image = build_image(registry_url, repo, config_media_type="application/x-anything")
    push(registry_url, repo, image, "anything")
    assert_manifest(registry_url, repo, "anything", image)
