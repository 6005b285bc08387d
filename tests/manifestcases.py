"""Manifests that disagree with the content they name, or that two JSON parsers could read
differently: the shared table behind the `/v2` and ECR `PutImage` integrity tests.

Each case builds a body (and the Content-Type / imageManifestMediaType it is sent with) from a
`Seed`: a repository holding a config, three layers, an image manifest tagged `keep` (also the
subject of one referrer) and an index tagged `index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ARTIFACT = "application/vnd.example.signature.v1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def encode(document: Any) -> bytes:
    return json.dumps(document, indent=1).encode()


@dataclass
class Seed:
    """What the repository holds before each refused push."""

    config: dict[str, Any]
    layers: list[dict[str, Any]]
    image: bytes  # tagged "keep"; the subject of `referrer`
    referrer: bytes
    index: bytes  # tagged "index"
    blobs: list[bytes] = field(default_factory=list)

    @property
    def image_descriptor(self) -> dict[str, Any]:
        return descriptor(OCI_MANIFEST, self.image)

    def image_doc(self) -> dict[str, Any]:
        """A new, valid image manifest over the seeded blobs (unique per call)."""
        return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": dict(self.config), "layers": [dict(d) for d in self.layers],
                "annotations": {"nonce": uuid.uuid4().hex}}

    def index_doc(self) -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{**self.image_descriptor,
                               "platform": {"architecture": "amd64", "os": "linux"}}],
                "annotations": {"nonce": uuid.uuid4().hex}}


def make_seed() -> Seed:
    nonce = uuid.uuid4().hex
    config = encode({"architecture": "amd64", "os": "linux", "nonce": nonce,
                     "rootfs": {"type": "layers", "diff_ids": []}})
    layers = [os.urandom(100 + 37 * i) for i in range(3)]
    image = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": descriptor(OCI_CONFIG, config),
                    "layers": [descriptor(OCI_LAYER, layer) for layer in layers]})
    empty = b"{}"
    referrer = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT,
                       "config": descriptor("application/vnd.oci.empty.v1+json", empty),
                       "layers": [descriptor(OCI_LAYER, layers[0])],
                       "subject": descriptor(OCI_MANIFEST, image)})
    index = encode({"schemaVersion": 2, "mediaType": OCI_INDEX,
                    "manifests": [{**descriptor(OCI_MANIFEST, image),
                                   "platform": {"architecture": "amd64", "os": "linux"}}]})
    return Seed(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, x) for x in layers],
                image, referrer, index, [config, *layers, empty])


def populate(seed: Seed, push_blob: Callable[[bytes], Any],
             put: Callable[[str, bytes, str], Any]) -> None:
    """Upload the seed's blobs, then its manifests (`put(reference, body, media_type)`)."""
    for blob in seed.blobs:
        push_blob(blob)
    put("keep", seed.image, OCI_MANIFEST)
    put(sha256(seed.referrer), seed.referrer, OCI_MANIFEST)
    put("index", seed.index, OCI_INDEX)


@dataclass(frozen=True)
class Case:
    """A refused push: body and media type from the seed; the `/v2` code and what the error
    must name (a descriptor such as `layers[2]`, or a phrase)."""

    id: str
    build: Callable[[Seed], tuple[bytes, str | None]]
    code: str = "MANIFEST_INVALID"
    names: str | None = None


def _image(mutate: Callable[[dict[str, Any], Seed], Any],
           media_type: str | None = OCI_MANIFEST) -> Callable[[Seed], tuple[bytes, str | None]]:
    def build(seed: Seed) -> tuple[bytes, str | None]:
        doc = seed.image_doc()
        mutate(doc, seed)
        return encode(doc), media_type
    return build


def _index(mutate: Callable[[dict[str, Any], Seed], Any]) -> Callable[[Seed],
                                                                       tuple[bytes, str | None]]:
    def build(seed: Seed) -> tuple[bytes, str | None]:
        doc = seed.index_doc()
        mutate(doc, seed)
        return encode(doc), OCI_INDEX
    return build


def _layer_size(index: int, size: Any) -> Callable[[dict[str, Any], Seed], None]:
    def mutate(doc: dict[str, Any], seed: Seed) -> None:
        doc["layers"][index]["size"] = size(doc["layers"][index]["size"]) if callable(size) \
            else size
    return mutate


def _config_size(size: Callable[[int], Any]) -> Callable[[dict[str, Any], Seed], None]:
    def mutate(doc: dict[str, Any], seed: Seed) -> None:
        doc["config"]["size"] = size(doc["config"]["size"])
    return mutate


def _subject(doc: dict[str, Any], seed: Seed) -> None:
    doc["subject"] = {**seed.image_descriptor, "size": len(seed.image) + 1}


def _subject_media_type(doc: dict[str, Any], seed: Seed) -> None:
    doc["subject"] = {**seed.image_descriptor, "mediaType": DOCKER_MANIFEST}


def _child_media_type(doc: dict[str, Any], seed: Seed) -> None:
    doc["manifests"][0]["mediaType"] = DOCKER_MANIFEST


def _child_size(size: Callable[[int], int]) -> Callable[[dict[str, Any], Seed], None]:
    def mutate(doc: dict[str, Any], seed: Seed) -> None:
        doc["manifests"][0]["size"] = size(doc["manifests"][0]["size"])
    return mutate


def _raw(text: Callable[[Seed], str], media_type: str | None = OCI_MANIFEST,
         prefix: bytes = b"") -> Callable[[Seed], tuple[bytes, str | None]]:
    return lambda seed: (prefix + text(seed).encode(), media_type)


def _j(value: Any) -> str:
    return json.dumps(value)


def _duplicate_layers(seed: Seed) -> str:
    missing = descriptor(OCI_LAYER, os.urandom(50))
    return (f'{{"schemaVersion": 2, "mediaType": {_j(OCI_MANIFEST)}, '
            f'"config": {_j(seed.config)}, "layers": [{_j(missing)}], '
            f'"layers": {_j(seed.layers)}, "annotations": {{"nonce": {_j(uuid.uuid4().hex)}}}}}')


def _duplicate_nested(seed: Seed) -> str:
    config = seed.config
    return (f'{{"schemaVersion": 2, "mediaType": {_j(OCI_MANIFEST)}, '
            f'"config": {{"mediaType": {_j(config["mediaType"])}, "digest": '
            f'{_j(config["digest"])}, "size": {config["size"]}, "size": 1}}, '
            f'"layers": {_j(seed.layers)}, "annotations": {{"nonce": {_j(uuid.uuid4().hex)}}}}}')


def _duplicate_annotation(seed: Seed) -> str:
    return (f'{{"schemaVersion": 2, "mediaType": {_j(OCI_MANIFEST)}, '
            f'"config": {_j(seed.config)}, "layers": {_j(seed.layers)}, '
            f'"annotations": {{"a": "1", "a": "2", "nonce": {_j(uuid.uuid4().hex)}}}}}')


def _valid_text(seed: Seed) -> str:
    return encode(seed.image_doc()).decode()


def _schema1(seed: Seed) -> str:
    return _j({"schemaVersion": 1, "name": "team/app", "tag": "keep", "architecture": "amd64",
               "fsLayers": [{"blobSum": d["digest"]} for d in seed.layers],
               "history": [{"v1Compatibility": "{}"} for _ in seed.layers]})


def _missing_blob(doc: dict[str, Any], seed: Seed) -> None:
    doc["layers"][1] = descriptor(OCI_LAYER, os.urandom(64))


def _missing_child(doc: dict[str, Any], seed: Seed) -> None:
    doc["manifests"][0] = {**descriptor(OCI_MANIFEST, os.urandom(64)),
                           "platform": {"architecture": "arm64", "os": "linux"}}


def _set(key: str, value: Any) -> Callable[[dict[str, Any], Seed], None]:
    def mutate(doc: dict[str, Any], seed: Seed) -> None:
        doc[key] = value
    return mutate


CASES: list[Case] = [
    # Sizes that disagree with the stored content.
    Case("layer-size-0", _image(_layer_size(2, 0)), names="layers[2]"),
    Case("layer-size-plus-1", _image(_layer_size(2, lambda s: s + 1)), names="layers[2]"),
    Case("layer-size-minus-1", _image(_layer_size(0, lambda s: s - 1)), names="layers[0]"),
    Case("layer-size-int64-max", _image(_layer_size(1, 2**63 - 1)), names="layers[1]"),
    Case("config-size-plus-1", _image(_config_size(lambda s: s + 1)), names="config"),
    Case("config-size-0", _image(_config_size(lambda s: 0)), names="config"),
    Case("subject-size", _image(_subject), names="subject"),
    Case("index-child-size-plus-1", _index(_child_size(lambda s: s + 1)), names="manifests[0]"),
    Case("index-child-size-0", _index(_child_size(lambda s: 0)), names="manifests[0]"),
    # A stored manifest named with another media type.
    Case("subject-media-type", _image(_subject_media_type), names="subject"),
    Case("index-child-media-type", _index(_child_media_type), names="manifests[0]"),
    # Sizes that are not int64 values.
    Case("size-2^64", _image(_layer_size(1, 2**64)), names="layers[1]"),
    Case("size-10^30", _image(_layer_size(1, 10**30)), names="layers[1]"),
    Case("size-negative", _image(_config_size(lambda s: -1)), names="config"),
    Case("size-float", _image(_layer_size(0, float)), names="layers[0]"),
    Case("size-bool", _image(_layer_size(0, True)), names="layers[0]"),
    Case("size-string", _image(_layer_size(0, str)), names="layers[0]"),
    # One meaning per document.
    Case("duplicate-layers-key", _raw(_duplicate_layers), names="layers"),
    Case("duplicate-nested-key", _raw(_duplicate_nested), names="size"),
    Case("duplicate-annotation-key", _raw(_duplicate_annotation), names="'a'"),
    Case("byte-order-mark", _raw(_valid_text, prefix=b"\xef\xbb\xbf"), names="byte-order"),
    Case("empty-mediaType", _image(_set("mediaType", "")), names="mediaType"),
    Case("mediaType-vs-content-type", _image(lambda d, s: None, DOCKER_MANIFEST),
         names="Content-Type"),
    Case("index-body-manifest-content-type",
         lambda seed: (encode(seed.index_doc()), OCI_MANIFEST), names="Content-Type"),
    Case("schema1", _raw(_schema1, SCHEMA1), names="schema 1"),
    Case("schema1-prettyjws", _raw(_schema1, SCHEMA1_SIGNED), names="schema 1"),
    Case("schema1-body-no-content-type", _raw(_schema1, None), names="schema 1"),
    Case("schema1-content-type-v2-body",
         lambda seed: (encode(seed.image_doc()), SCHEMA1), names="schema 1"),
    # Unknown content keeps its own code.
    Case("unknown-layer", _image(_missing_blob), code="MANIFEST_BLOB_UNKNOWN"),
    Case("unknown-index-child", _index(_missing_child), code="MANIFEST_BLOB_UNKNOWN"),
]


def error_text(body: dict[str, Any]) -> str:
    """Message and detail of every error of an envelope, for `Case.names` checks."""
    return json.dumps(body.get("errors", []))
