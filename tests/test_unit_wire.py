"""Unit tests of the wire grammar: digests, names, tags, manifest parsing."""

from __future__ import annotations

import json

import pytest

from cargohold.wire.digest import digest_of, parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    base_media_type,
    parse_manifest,
)
from cargohold.wire.names import validate_name, validate_tag

SHA = "sha256:" + "a" * 64
SHA512 = "sha512:" + "b" * 128


def code_of(exc: pytest.ExceptionInfo[RegistryError]) -> ErrorCode:
    return exc.value.code


@pytest.mark.parametrize("value", [SHA, SHA512])
def test_valid_digests(value: str) -> None:
    assert str(parse_digest(value)) == value


@pytest.mark.parametrize("value", [
    None, "", "sha256", "sha256:", "sha256:xyz", "sha256:" + "a" * 63, "sha256:" + "A" * 64,
    "md5:" + "a" * 32, "../../etc/passwd", "sha256:" + "a" * 64 + "/..", "SHA256:" + "a" * 64,
    "sha512:" + "a" * 64, "sha256:" + "a" * 300,
])
def test_invalid_digests(value: str | None) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_digest(value)
    assert code_of(exc) is ErrorCode.DIGEST_INVALID


def test_digest_of_matches_hashlib() -> None:
    assert str(digest_of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert digest_of(b"x", "sha512").algorithm == "sha512"


@pytest.mark.parametrize("name", ["a", "library/ubuntu", "team/app/chart", "a.b_c__d--e/f-0",
                                  "x" * 255])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "Upper/case", "a/../b", "..", "a//b", "/a", "a/",
                                  "-a", "a-", "a..b", "a___b", "a/.b", "x" * 256, "a b", "a%2fb"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as exc:
        validate_name(name)
    assert code_of(exc) is ErrorCode.NAME_INVALID


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_x", "A" * 128, "1-2_3.4"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "A" * 129, "a:b", "a/b", "a b"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(RegistryError) as exc:
        validate_tag(tag)
    assert code_of(exc) is ErrorCode.TAG_INVALID


def descriptor(media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
               digest: str = SHA, size: int = 10, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(**extra: object) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", SHA512),
            "layers": [descriptor()], **extra}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def test_image_manifest_references_and_artifact_type() -> None:
    parsed = parse_manifest(encode(image()), OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.required_blobs() == {SHA, SHA512}
    assert parsed.artifact_type == "application/vnd.oci.image.config.v1+json"
    assert not parsed.is_index


def test_artifact_type_wins_over_config_media_type() -> None:
    parsed = parse_manifest(encode(image(artifactType="application/vnd.example+json")), None)
    assert parsed.artifact_type == "application/vnd.example+json"


def test_helm_config_media_type_is_the_artifact_type() -> None:
    document = image()
    document["config"] = descriptor("application/vnd.cncf.helm.config.v1+json")
    assert parse_manifest(encode(document), OCI_MANIFEST).artifact_type == (
        "application/vnd.cncf.helm.config.v1+json")


def test_subject_and_annotations_are_extracted() -> None:
    parsed = parse_manifest(encode(image(subject=descriptor(OCI_MANIFEST),
                                         annotations={"k": "v"})), OCI_MANIFEST)
    assert parsed.subject is not None and parsed.subject.digest == SHA
    assert parsed.annotations == {"k": "v"}


def test_index_children_and_structure_detection() -> None:
    index = {"schemaVersion": 2, "manifests": [descriptor(OCI_MANIFEST, size=5,
                                                          platform={"os": "linux"})]}
    parsed = parse_manifest(encode(index), "application/json")
    assert parsed.media_type == OCI_INDEX
    assert parsed.required_manifests() == {SHA}
    assert parsed.artifact_type is None


def test_docker_types_from_content_type() -> None:
    docker = image()
    docker.pop("mediaType")
    assert parse_manifest(encode(docker), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    listing = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
               "manifests": [descriptor(DOCKER_MANIFEST)]}
    assert parse_manifest(encode(listing), DOCKER_MANIFEST_LIST).is_index


def test_foreign_layers_with_urls_are_not_required() -> None:
    document = image()
    document["layers"] = [descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                                     urls=["https://example.com/layer"])]
    assert parse_manifest(encode(document), OCI_MANIFEST).required_blobs() == {SHA512}


def test_content_type_parameters_are_ignored() -> None:
    assert base_media_type("application/vnd.oci.image.manifest.v1+json; charset=utf-8") == (
        OCI_MANIFEST)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"null", b"\xff\xfe",
    encode({"mediaType": OCI_MANIFEST}),
    encode(image(schemaVersion=1)),
    encode(image(schemaVersion=True)),
    encode(image(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws")),
    encode(image(mediaType="text/plain")),
    encode(image(mediaType=5)),
    encode(image(layers="nope")),
    encode(image(layers=[descriptor(size=-1)])),
    encode(image(layers=[descriptor(size=True)])),
    encode(image(layers=[descriptor(size="10")])),
    encode(image(layers=[descriptor(digest="sha256:short")])),
    encode(image(layers=[descriptor(media_type="not a type")])),
    encode(image(layers=[descriptor(urls="x")])),
    encode(image(annotations={"k": 1})),
    encode(image(artifactType="bad")),
    encode(image(subject="x")),
    encode(image(manifests=[])),
    encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
    encode({"schemaVersion": 2, "mediaType": OCI_INDEX}),
    encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": []}),
    encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": SHA}]}),
])
def test_malformed_manifests_are_refused(body: bytes) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(body, OCI_MANIFEST if b"index" not in body else OCI_INDEX)
    assert code_of(exc) is ErrorCode.MANIFEST_INVALID


def test_deeply_nested_json_is_refused_not_crashed() -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(b"[" * 100_000 + b"]" * 100_000, OCI_MANIFEST)
    assert code_of(exc) is ErrorCode.MANIFEST_INVALID


def test_media_type_must_match_content_type() -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(encode(image()), DOCKER_MANIFEST)
    assert code_of(exc) is ErrorCode.MANIFEST_INVALID


def test_error_envelope_shape() -> None:
    error = RegistryError(ErrorCode.MANIFEST_TOO_LARGE, detail={"limit": 1})
    assert error.status == 413
    assert error.body() == {"errors": [{"code": "MANIFEST_INVALID",
                                        "message": "manifest exceeds the size limit",
                                        "detail": {"limit": 1}}]}
