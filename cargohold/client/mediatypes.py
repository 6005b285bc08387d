"""Media types, annotation keys and friendly names for the artifacts the CLI knows about."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
UNKNOWN_ARTIFACT = "application/vnd.unknown.artifact.v1"
UNKNOWN_CONFIG = "application/vnd.unknown.config.v1+json"

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"

OPA_CONFIG = "application/vnd.cncf.openpolicyagent.config.v1+json"
OPA_LAYER = "application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ALL_MANIFEST_TYPES = (*MANIFEST_TYPES, *INDEX_TYPES)
ACCEPT_MANIFESTS = ", ".join(ALL_MANIFEST_TYPES)

ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_URL = "org.opencontainers.image.url"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_AUTHORS = "org.opencontainers.image.authors"
# oras' markers for a folder packed as a tar.gz layer (so `oras pull` unpacks it too).
ANNOTATION_ORAS_UNPACK = "io.deis.oras.content.unpack"
ANNOTATION_ORAS_DIGEST = "io.deis.oras.content.digest"

# artifactType / config media type -> a name a person recognises.
FRIENDLY_ARTIFACT_TYPES: dict[str, str] = {
    OCI_CONFIG: "container image",
    DOCKER_CONFIG: "container image (Docker)",
    OCI_INDEX: "multi-platform index",
    DOCKER_MANIFEST_LIST: "multi-platform index (Docker)",
    HELM_CONFIG: "Helm chart",
    OPA_CONFIG: "OPA bundle",
    "application/vnd.cncf.openpolicyagent.policy.layer.v1+rego": "OPA policy",
    "application/vnd.cncf.openpolicyagent.data.layer.v1+json": "OPA data",
    "application/spdx+json": "SBOM (SPDX)",
    "text/spdx": "SBOM (SPDX)",
    "application/vnd.cyclonedx+json": "SBOM (CycloneDX)",
    "application/vnd.cyclonedx+xml": "SBOM (CycloneDX)",
    "application/vnd.syft+json": "SBOM (Syft)",
    "application/vnd.example.sbom.v1+json": "SBOM",
    "application/vnd.dev.cosign.simplesigning.v1+json": "signature (cosign)",
    "application/vnd.dev.cosign.artifact.sig.v1+json": "signature (cosign)",
    "application/vnd.dev.cosign.artifact.sbom.v1+json": "SBOM (cosign)",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "signature (Sigstore bundle)",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "signature (Sigstore bundle)",
    "application/vnd.cncf.notary.signature": "signature (Notary)",
    "application/vnd.in-toto+json": "attestation (in-toto)",
    "application/vnd.dsse.envelope.v1+json": "attestation (DSSE)",
    "application/vnd.wasm.config.v0+json": "WebAssembly module",
    "application/vnd.wasm.config.v1+json": "WebAssembly module",
    "application/vnd.cncf.flux.config.v1+json": "Flux artifact",
    "application/vnd.cncf.artifacthub.config.v1+yaml": "Artifact Hub metadata",
    "application/vnd.oci.image.layer.v1.tar": "file",
    UNKNOWN_ARTIFACT: "artifact",
    UNKNOWN_CONFIG: "artifact",
    OCI_EMPTY: "artifact",
}

FRIENDLY_BLOB_TYPES: dict[str, str] = {
    OCI_CONFIG: "image config",
    DOCKER_CONFIG: "image config",
    OCI_LAYER_TAR: "file / layer (tar)",
    OCI_LAYER_GZIP: "layer (tar+gzip)",
    OCI_LAYER_ZSTD: "layer (tar+zstd)",
    DOCKER_LAYER: "layer (tar+gzip)",
    OCI_EMPTY: "empty config",
    HELM_CONFIG: "Helm chart metadata",
    HELM_CHART: "Helm chart archive",
    HELM_PROV: "Helm provenance",
    OPA_CONFIG: "OPA bundle config",
    OPA_LAYER: "OPA bundle archive",
}


def friendly_artifact_type(media_type: str | None) -> str:
    """A person's name for an artifact type; unknown types get a guess from their words."""
    if not media_type:
        return "artifact"
    known = FRIENDLY_ARTIFACT_TYPES.get(media_type)
    if known:
        return known
    lowered = media_type.lower()
    for needle, name in (("helm", "Helm chart"), ("openpolicyagent", "OPA bundle"),
                         ("spdx", "SBOM (SPDX)"), ("cyclonedx", "SBOM (CycloneDX)"),
                         ("sbom", "SBOM"), ("signature", "signature"), ("sig", "signature"),
                         ("in-toto", "attestation"), ("attestation", "attestation"),
                         ("wasm", "WebAssembly module")):
        if needle in lowered:
            return name
    return "artifact"


def friendly_blob_type(media_type: str | None) -> str:
    if not media_type:
        return "blob"
    return FRIENDLY_BLOB_TYPES.get(media_type, "blob")


def is_index(media_type: str | None) -> bool:
    return media_type in INDEX_TYPES
