"""Strict manifest parsing (wire/manifest.py): exactly one reading of the bytes, int64 sizes,
and media types that agree. The HTTP-level behaviour is in test_manifest_integrity.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.manifest import MAX_DESCRIPTOR_SIZE, parse_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "ab" * 32


def image(size: Any = 10) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": DIGEST, "size": size},
            "layers": []}


def refused(content: bytes, content_type: str | None = OCI_MANIFEST) -> RegistryError:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(content, content_type)
    assert exc.value.code is ErrorCode.MANIFEST_INVALID
    return exc.value


def test_largest_int64_size_parses() -> None:
    parsed = parse_manifest(json.dumps(image(MAX_DESCRIPTOR_SIZE)).encode(), OCI_MANIFEST)
    assert parsed.config is not None and parsed.config.size == 2**63 - 1


@pytest.mark.parametrize("size", [2**63, 2**64, 10**30, -1, 1.0, 1e3, True, None, "1"])
def test_sizes_outside_int64_are_refused(size: Any) -> None:
    error = refused(json.dumps(image(size)).encode())
    assert error.detail["descriptor"] == "config"


@pytest.mark.parametrize("text", [
    '{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}',
    '{"schemaVersion": 2, "config": {"size": 1, "size": 1}, "layers": []}',
    '{"schemaVersion": 2, "layers": [{"a": {"b": 1, "b": 1}}]}',
    '{"schemaVersion": 2, "annotations": {"k": "v", "k": "v"}}',
], ids=["top", "descriptor", "deep", "annotations"])
def test_duplicate_keys_anywhere_are_refused(text: str) -> None:
    assert "duplicate key" in refused(text.encode()).message


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbf" + json.dumps(image()).encode(),
    json.dumps(image()).encode("utf-16"),
    json.dumps(image()).encode("utf-32"),
    json.dumps({**image(), "annotations": {"k": "caf\u00e9"}}, ensure_ascii=False
               ).encode("latin-1"),
    json.dumps(image()).replace("10", "NaN").encode(),
    json.dumps(image()).replace("10", "Infinity").encode(),
], ids=["bom", "utf-16", "utf-32", "latin-1", "nan", "infinity"])
def test_only_plain_utf8_json_is_read(content: bytes) -> None:
    refused(content)


def test_media_type_must_agree_and_not_be_empty() -> None:
    refused(json.dumps({**image(), "mediaType": ""}).encode(), None)
    refused(json.dumps(image()).encode(), "application/json")
    assert parse_manifest(json.dumps(image()).encode(), None).media_type == OCI_MANIFEST


@pytest.mark.parametrize("content_type", [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws; charset=utf-8",
    None,
])
def test_schema1_is_refused_as_unsupported(content_type: str | None) -> None:
    body = {"schemaVersion": 1, "name": "a", "tag": "b", "fsLayers": [], "history": []}
    assert "schema 1" in refused(json.dumps(body).encode(), content_type).message
