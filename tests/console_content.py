"""Pushes real artifacts to a registry over the distribution API (plain HTTP, Basic auth):
images, a multi-platform index, a Helm chart, an OPA bundle, and signature/SBOM referrers.
Used by the console's browser tests and its benchmark."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OPA_CONFIG = "application/vnd.cncf.openpolicyagent.config.v1+json"
OPA_LAYER = "application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def targz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class Pusher:
    def __init__(self, url: str, auth: tuple[str, str] | None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if auth:
            self.session.auth = auth

    def blob(self, repository: str, data: bytes) -> dict[str, Any]:
        digest = digest_of(data)
        response = self.session.post(f"{self.url}/v2/{repository}/blobs/uploads/",
                                     params={"digest": digest}, data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 201, response.text
        return {"digest": digest, "size": len(data)}

    def manifest(self, repository: str, document: dict[str, Any], reference: str | None = None
                 ) -> dict[str, Any]:
        body = json.dumps(document).encode()
        digest = digest_of(body)
        media_type = document["mediaType"]
        response = self.session.put(f"{self.url}/v2/{repository}/manifests/{reference or digest}",
                                    data=body, headers={"Content-Type": media_type})
        assert response.status_code == 201, response.text
        return {"mediaType": media_type, "digest": digest, "size": len(body)}

    def image(self, repository: str, tag: str | None, *, arch: str = "amd64",
              seed: str = "", annotations: dict[str, str] | None = None,
              env: list[str] | None = None) -> dict[str, Any]:
        config = {"architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
                  "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"],
                             "Env": env or ["PATH=/usr/bin", f"SEED={seed}"],
                             "ExposedPorts": {"8080/tcp": {}},
                             "Labels": {"org.opencontainers.image.source": "https://example.com"}},
                  "rootfs": {"type": "layers", "diff_ids": []},
                  "history": [{"created_by": f"COPY app /bin/app # {seed}"}]}
        layer = targz({"bin/app": f"binary {arch} {seed}".encode()})
        document: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG,
                       **self.blob(repository, json.dumps(config).encode())},
            "layers": [{"mediaType": OCI_LAYER, **self.blob(repository, layer),
                        "annotations": {"org.opencontainers.image.title": "app.tar.gz"}}]}
        if annotations:
            document["annotations"] = annotations
        return self.manifest(repository, document, tag)

    def multiarch(self, repository: str, tag: str) -> dict[str, Any]:
        children = []
        for arch, variant in (("amd64", None), ("arm64", "v8")):
            child = self.image(repository, None, arch=arch, seed=tag)
            platform = {"os": "linux", "architecture": arch}
            if variant:
                platform["variant"] = variant
            children.append({**child, "platform": platform})
        return self.manifest(repository, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": children}, tag)

    def referrer(self, repository: str, subject: dict[str, Any], artifact_type: str,
                 payload: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        empty = self.blob(repository, b"{}")
        document: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, **empty},
            "layers": [{"mediaType": artifact_type, **self.blob(repository, payload)}],
            "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"],
                        "size": subject["size"]}}
        if annotations:
            document["annotations"] = annotations
        return self.manifest(repository, document)

    def chart(self, repository: str, version: str, *, readme: str = "# Demo chart\n",
              description: str = "A demo chart", extra: dict[str, bytes] | None = None
              ) -> dict[str, Any]:
        chart_yaml = (f"apiVersion: v2\nname: demo\nversion: {version}\nappVersion: '1.2.3'\n"
                      f"description: {json.dumps(description)}\ndependencies:\n"
                      "  - name: redis\n    version: 18.0.0\n"
                      "    repository: oci://registry.example.com/charts\n")
        files = {"demo/Chart.yaml": chart_yaml.encode(), "demo/values.yaml": b"replicas: 2\n",
                 "demo/README.md": readme.encode(),
                 "demo/templates/deployment.yaml": b"kind: Deployment\n", **(extra or {})}
        config = json.dumps({"name": "demo", "version": version, "apiVersion": "v2"}).encode()
        return self.manifest(repository, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": HELM_CONFIG, **self.blob(repository, config)},
            "layers": [{"mediaType": HELM_LAYER, **self.blob(repository, targz(files))}]},
            version)

    def bundle(self, repository: str, tag: str, files: dict[str, bytes] | None = None
               ) -> dict[str, Any]:
        contents = files or {
            ".manifest": json.dumps({"roots": ["authz"], "revision": "r1"}).encode(),
            "authz/policy.rego": b"package authz\n\ndefault allow := false\n",
            "authz/data.json": b"{}"}
        return self.manifest(repository, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OPA_CONFIG, **self.blob(repository, b"{}")},
            "layers": [{"mediaType": OPA_LAYER, **self.blob(repository, targz(contents))}]},
            tag)
