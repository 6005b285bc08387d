"""Manifest parsing and validation for OCI and Docker schema 2 manifests and indexes.

The registry stores manifests byte for byte; this module only extracts what the registry must
know (references, subject, artifact type) and refuses documents that are not valid manifests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cargohold.wire.digest import parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

# A descriptor's size is an int64 in the image spec; JSON numbers beyond it are refused.
MAX_DESCRIPTOR_SIZE = 2**63 - 1
_BOM = b"\xef\xbb\xbf"
_ECHOED = 200  # characters of an offending value shown in an error

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES

# Layers that live outside the registry (their bytes are fetched from `urls`).
NON_DISTRIBUTABLE_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})

# RFC 6838 media type, as the OCI image spec restricts it.
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)


def is_media_type(value: object) -> bool:
    return isinstance(value, str) and bool(_MEDIA_TYPE.match(value))


def base_media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header without its parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    has_urls: bool = False


@dataclass(slots=True)
class ParsedManifest:
    """What the registry needs to know of a manifest, beside its exact bytes."""

    media_type: str
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def config_media_type(self) -> str | None:
        return self.config.media_type if self.config else None

    def required_blobs(self) -> set[str]:
        """Blobs that must already be in the repository for this manifest to be accepted."""
        blobs = {self.config.digest} if self.config else set()
        blobs.update(
            layer.digest for layer in self.layers
            if not (layer.has_urls and layer.media_type in NON_DISTRIBUTABLE_LAYER_TYPES)
        )
        return blobs

    def required_manifests(self) -> set[str]:
        return {child.digest for child in self.manifests}

    def declared_references(self) -> list[tuple[str, str, Descriptor]]:
        """(where, kind, descriptor) of every descriptor naming stored content: the registry
        checks each one's size (and a manifest's media type) against what it holds. `kind` is
        "blob" or "manifest"; a "manifest" that is not stored is checked only if required."""
        required = self.required_blobs()
        named: list[tuple[str, str, Descriptor]] = []
        if self.config is not None:
            named.append(("config", "blob", self.config))
        named += [(f"layers[{i}]", "blob", layer) for i, layer in enumerate(self.layers)
                  if layer.digest in required]
        named += [(f"manifests[{i}]", "manifest", child)
                  for i, child in enumerate(self.manifests)]
        if self.subject is not None:
            named.append(("subject", "manifest", self.subject))
        return named


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message, detail)


def _annotations(value: object, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where}: annotations must be a map of strings")
    return value


def _optional_media_type(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not is_media_type(value):
        raise _invalid(f"{where}: invalid media type", {"mediaType": value})
    return str(value)


def parse_descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type = value.get("mediaType")
    if not is_media_type(media_type):
        raise _invalid(f"{where}: invalid or missing mediaType", {"mediaType": media_type})
    raw_digest = value.get("digest")
    try:
        digest = parse_digest(raw_digest if isinstance(raw_digest, str) else None)
    except RegistryError as exc:
        raise _invalid(f"{where}: {exc.message}", {"digest": raw_digest}) from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_DESCRIPTOR_SIZE:
        raise _invalid(f"{where}: size must be an integer from 0 to 2^63-1",
                       {"descriptor": where, "size": size})
    urls = value.get("urls")
    if urls is not None and not (
        isinstance(urls, list) and all(isinstance(u, str) for u in urls)
    ):
        raise _invalid(f"{where}: urls must be a list of strings")
    if "platform" in value and not isinstance(value["platform"], dict):
        raise _invalid(f"{where}: platform must be an object")
    return Descriptor(
        media_type=str(media_type),
        digest=str(digest),
        size=size,
        artifact_type=_optional_media_type(value.get("artifactType"), where),
        annotations=_annotations(value.get("annotations"), where),
        has_urls=bool(urls),
    )


def _descriptor_list(document: dict[str, Any], key: str, required: bool) -> list[Descriptor]:
    value = document.get(key)
    if value is None:
        if required:
            raise _invalid(f"{key} is required")
        return []
    if not isinstance(value, list):
        raise _invalid(f"{key} must be an array")
    return [parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _detect_media_type(document: dict[str, Any], content_type: str) -> str:
    """The manifest's media type; the body's `mediaType` and the Content-Type must agree."""
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if declared == "":
        raise _invalid("mediaType must not be empty", {"mediaType": declared})
    if declared and content_type and declared != content_type:
        raise _invalid("mediaType does not match Content-Type",
                       {"mediaType": declared, "contentType": content_type})
    media_type = declared or (content_type if content_type in MANIFEST_TYPES else "")
    if not media_type:
        # OCI allows mediaType to be omitted; fall back to the document's structure.
        if "manifests" in document:
            media_type = OCI_INDEX
        elif "config" in document:
            media_type = OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1:
        raise schema1_unsupported(media_type)
    if media_type not in MANIFEST_TYPES:
        raise _invalid("unsupported manifest media type",
                       {"mediaType": media_type or content_type})
    return media_type


def schema1_unsupported(media_type: str) -> RegistryError:
    return _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI",
                    {"mediaType": media_type})


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a key given twice has two meanings, so the document is refused."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))[:_ECHOED]
        raise _invalid(f"manifest has duplicate key {duplicate!r}", {"key": duplicate})
    return document


def _no_constant(name: str) -> Any:
    raise _invalid(f"manifest is not valid JSON: {name} is not a JSON number")


def strict_json(content: bytes) -> Any:
    """Parse exactly one meaning out of the bytes: UTF-8 without BOM, no duplicate keys."""
    if content.startswith(_BOM):
        raise _invalid("manifest starts with a byte-order mark")
    try:
        text = content.decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None


def parse_manifest(content: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a pushed manifest and extract its references; refuse anything malformed."""
    content_media_type = base_media_type(content_type)
    if content_media_type in DOCKER_SCHEMA1:
        raise schema1_unsupported(content_media_type)
    document = strict_json(content)
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    schema_version = document.get("schemaVersion")
    if schema_version == 1 and not isinstance(schema_version, bool):
        raise schema1_unsupported(str(document.get("mediaType") or DOCKER_SCHEMA1[0]))
    if schema_version != 2 or isinstance(schema_version, bool):
        raise _invalid("schemaVersion must be 2", {"schemaVersion": schema_version})
    media_type = _detect_media_type(document, content_media_type)
    parsed = ParsedManifest(
        media_type=media_type,
        annotations=_annotations(document.get("annotations"), "manifest"),
        artifact_type=_optional_media_type(document.get("artifactType"), "manifest"),
    )
    if "subject" in document and document["subject"] is not None:
        parsed.subject = parse_descriptor(document["subject"], "subject")
    if media_type in INDEX_TYPES:
        if "config" in document or "layers" in document:
            raise _invalid("an index has no config or layers")
        parsed.manifests = _descriptor_list(document, "manifests", required=True)
    else:
        if "manifests" in document:
            raise _invalid("an image manifest has no manifests list")
        if "config" not in document:
            raise _invalid("config is required")
        parsed.config = parse_descriptor(document["config"], "config")
        parsed.layers = _descriptor_list(document, "layers", required=True)
        if parsed.artifact_type is None:
            parsed.artifact_type = parsed.config.media_type
    return parsed
