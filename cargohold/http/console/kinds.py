"""Artifact kinds: a friendly name and a badge for each media type a registry holds.

The kind is decided by the manifest's media type (an index is a multi-platform image) and its
artifact type (the config media type when the manifest names none). The same rules become SQL
so that the repository page can filter by kind without loading every image.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, not_, or_

from cargohold.storage.console import in_set
from cargohold.storage.schema import manifests

INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.list.v2+json"})


@dataclass(frozen=True, slots=True)
class Kind:
    key: str
    name: str
    badge: str  # the short label drawn in the kind's coloured icon
    types: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def matches(self, artifact_type: str | None) -> bool:
        return artifact_type is not None and (
            artifact_type in self.types or artifact_type.startswith(self.prefixes or ("\0",)))


MULTI = Kind("multi", "Multi-platform image", "IDX")
UNKNOWN = Kind("artifact", "Artifact", "ART")
TYPED_KINDS: tuple[Kind, ...] = (
    Kind("image", "Container image", "IMG", frozenset({
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json"})),
    Kind("helm", "Helm chart", "HELM", frozenset({"application/vnd.cncf.helm.config.v1+json"})),
    Kind("opa", "OPA bundle", "OPA", frozenset({
        "application/vnd.cncf.openpolicyagent.config.v1+json",
        "application/vnd.cncf.openpolicyagent.manifest.layer.v1+json"})),
    Kind("sbom", "SBOM", "SBOM", frozenset({
        "application/spdx+json", "text/spdx", "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml", "application/vnd.cyclonedx",
        "application/vnd.syft+json", "application/vnd.example.sbom"}),
        ("application/spdx", "application/vnd.cyclonedx")),
    Kind("signature", "Signature", "SIG", frozenset({
        "application/vnd.cncf.notary.signature",
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/vnd.example.signature"}), ("application/vnd.cncf.notary.",)),
    Kind("attestation", "Attestation", "ATT", frozenset({
        "application/vnd.in-toto+json", "application/vnd.dsse.envelope.v1+json",
        "application/vnd.dev.cosign.artifact.att.v1+json"},
    ), ("application/vnd.dev.sigstore.bundle", "application/vnd.in-toto")),
    Kind("cnab", "CNAB bundle", "CNAB", frozenset({
        "application/vnd.cnab.config.v1+json", "application/vnd.cnab.manifest.v1"}),
        ("application/vnd.cnab.",)),
    Kind("compose", "Compose file", "YML", frozenset({
        "application/vnd.docker.compose.project",
        "application/vnd.docker.compose.config.empty.v1+json"}),
        ("application/vnd.docker.compose.",)),
    Kind("cloudformation", "CloudFormation template", "CFN", frozenset(),
         ("application/vnd.aws.cloudformation",)),
    Kind("wasm", "WebAssembly module", "WASM", frozenset({
        "application/vnd.wasm.config.v0+json", "application/vnd.wasm.config.v1+json",
        "application/vnd.module.wasm.config.v1+json"}), ("application/vnd.wasm.",)),
    Kind("model", "ML model", "ML", frozenset({
        "application/vnd.cncf.model.config.v1+json",
        "application/vnd.docker.ai.model.config.v0.1+json",
        "application/vnd.kitops.modelkit.config.v1+json"}),
        ("application/vnd.cncf.model.", "application/vnd.docker.ai.",
         "application/vnd.kitops.")),
)
ALL_KINDS: tuple[Kind, ...] = (TYPED_KINDS[0], MULTI, *TYPED_KINDS[1:], UNKNOWN)
BY_KEY = {kind.key: kind for kind in ALL_KINDS}


def kind_of(media_type: str, artifact_type: str | None) -> Kind:
    """The kind of a manifest, from its media type and artifact (or config) type."""
    if media_type in INDEX_TYPES and artifact_type is None:
        return MULTI
    for kind in TYPED_KINDS:
        if kind.matches(artifact_type):
            return kind
    if media_type in INDEX_TYPES:
        return MULTI
    return UNKNOWN


def kind_filter(key: str) -> ColumnElement[bool] | None:
    """SQL matching the manifests of one kind (None: no such kind, no filter)."""
    kind = BY_KEY.get(key)
    if kind is None:
        return None
    typed = [in_set(manifests.c.artifact_type, k.types, k.prefixes) for k in TYPED_KINDS]
    index = manifests.c.media_type.in_(sorted(INDEX_TYPES))
    if kind is MULTI:
        return and_(index, or_(manifests.c.artifact_type.is_(None), not_(or_(*typed))))
    if kind is UNKNOWN:
        return and_(not_(index), or_(manifests.c.artifact_type.is_(None), not_(or_(*typed))))
    return in_set(manifests.c.artifact_type, kind.types, kind.prefixes)
