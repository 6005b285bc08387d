"""The oras Python SDK (``oras.client.OrasClient``) pushing and pulling OCI artifacts:
a Helm chart, an OPA bundle, a chunked upload, and referrers (``subject`` / ``artifactType``).

After every push the stored manifest is fetched over plain HTTP to check that the artifact's
media types survived untouched; pulls are compared byte for byte with what was pushed.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from clienthelpers import (
    EMPTY_JSON,
    EXTERNAL_URL,
    HTTP_TIMEOUT,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_tag_list,
    canonical_json,
    describe,
    descriptor,
    get_blob,
    get_manifest,
    host_of,
    push_blob,
    push_manifest,
    require_oras,
    sha256_digest,
)

pytestmark = pytest.mark.clients

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OPA_CONFIG = "application/vnd.cncf.openpolicyagent.config.v1+json"
OPA_MANIFEST_LAYER = "application/vnd.cncf.openpolicyagent.manifest.layer.v1+json"
OPA_POLICY_LAYER = "application/vnd.cncf.openpolicyagent.policy.layer.v1+rego"
OPA_DATA_LAYER = "application/vnd.cncf.openpolicyagent.data.layer.v1+json"
TITLE = "org.opencontainers.image.title"

SIGNATURE_CONFIG = "application/vnd.cargohold.test.signature.config.v1+json"
SIGNATURE_LAYER = "application/vnd.cargohold.test.signature.v1"
SBOM_ARTIFACT = "application/vnd.cargohold.test.sbom.v1"
SBOM_LAYER = "application/spdx+json"



class OrasRetried(AssertionError):
    """oras-py hit an error (an HTTP 500 or an exception) and wanted to retry."""


def _no_retry_sleep(seconds: float) -> None:
    raise OrasRetried(
        "oras-py wanted to retry a request after an HTTP 500 or an exception (its log line "
        "'Retrying in ... - error: ...' in the captured output says which); a working "
        "registry on 127.0.0.1 needs no retries")


@pytest.fixture
def oras_client(registry_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``OrasClient(hostname="127.0.0.1:PORT", insecure=True)``: plain HTTP, no auth.

    oras-py's ``do_request`` silently retries failed requests (exceptions and HTTP 500) with
    sleeps of 2 + 3**attempt seconds.  Retries would hide server bugs, so the sleep raises
    instead: the first failure fails the test at once.  Every request also gets a timeout.
    """
    client_mod = require_oras()
    import oras.decorator

    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=_no_retry_sleep))
    client = client_mod.OrasClient(hostname=host_of(registry_url), insecure=True,
                                   tls_verify=False)
    # oras-py passes no timeout to requests; give every request one so nothing hangs.
    client.session.request = functools.partial(client.session.request, timeout=HTTP_TIMEOUT)
    return client


def target(registry_url: str, repo: str, ref: str) -> str:
    sep = "@" if ":" in ref else ":"
    return f"{host_of(registry_url)}/{repo}{sep}{ref}"


def fetch_manifest(registry_url: str, repo: str, ref: str) -> tuple[bytes, dict[str, Any]]:
    resp = get_manifest(registry_url, repo, ref, accept=OCI_MANIFEST)
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_MANIFEST, \
        describe(resp)
    assert resp.headers.get("Docker-Content-Digest") == sha256_digest(resp.content), \
        describe(resp)
    return resp.content, resp.json()


def assert_push_ok(resp: requests.Response, registry_url: str, repo: str, ref: str) -> bytes:
    """The manifest PUT made by oras succeeded and its digest header matches the stored bytes."""
    assert resp.status_code == 201, describe(resp)
    raw, _ = fetch_manifest(registry_url, repo, ref)
    assert resp.headers.get("Docker-Content-Digest") == sha256_digest(raw), describe(resp)
    return raw


def assert_blob(registry_url: str, repo: str, data: bytes) -> None:
    resp = get_blob(registry_url, repo, sha256_digest(data))
    assert resp.status_code == 200, describe(resp)
    assert resp.content == data


def assert_pulled(files: list[str], expected: dict[str, bytes], outdir: Path) -> None:
    got = {Path(f).relative_to(outdir.resolve()).as_posix(): Path(f).read_bytes() for f in files}
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        assert got[name] == data, f"pulled {name} differs from what was pushed"


# --------------------------------------------------------------------------------------------
# Helm chart
# --------------------------------------------------------------------------------------------

CHART_YAML = """\
apiVersion: v2
name: mychart
description: A Helm chart pushed to Cargohold by the oras SDK
type: application
version: {version}
appVersion: "1.16.0"
"""

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mychart.fullname" . }}
spec:
  replicas: {{ .Values.replicaCount }}
  template:
    spec:
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""


def make_chart(root: Path, version: str) -> tuple[Path, Path, dict[str, Any]]:
    """Write a chart directory, package it like ``helm package`` and write the OCI config."""
    chart = root / "mychart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML.format(version=version))
    (chart / "values.yaml").write_text(
        "replicaCount: 1\nimage:\n  repository: nginx\n  tag: stable\n")
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT_YAML)
    (chart / "templates" / "_helpers.tpl").write_text(
        '{{- define "mychart.fullname" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end }}\n')
    (chart / ".helmignore").write_text(".git/\n")

    tgz = root / f"mychart-{version}.tgz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(p for p in chart.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(root).as_posix())
    tgz.write_bytes(buf.getvalue())

    meta = {"name": "mychart", "version": version, "apiVersion": "v2",
            "description": "A Helm chart pushed to Cargohold by the oras SDK",
            "type": "application", "appVersion": "1.16.0"}
    config = root / f"chart-config-{version}.json"
    config.write_bytes(json.dumps(meta).encode())
    return tgz, config, meta


def push_chart(client: Any, registry_url: str, repo: str, root: Path,
               version: str) -> tuple[requests.Response, Path, Path]:
    tgz, config, _ = make_chart(root / version, version)
    resp = client.push(
        target=target(registry_url, repo, version),
        files=[f"{tgz}:{HELM_CHART}"],
        manifest_config=f"{config}:{HELM_CONFIG}",
        manifest_annotations={"org.opencontainers.image.version": version},
        disable_path_validation=True,
    )
    return resp, tgz, config


def test_helm_chart_push_pull(oras_client: Any, registry_url: str, repo: str,
                              tmp_path: Path) -> None:
    resp, tgz, config = push_chart(oras_client, registry_url, repo, tmp_path, "0.1.0")
    raw = assert_push_ok(resp, registry_url, repo, "0.1.0")
    manifest = json.loads(raw)

    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    assert manifest["config"]["digest"] == sha256_digest(config.read_bytes())
    assert manifest["config"]["size"] == config.stat().st_size
    assert [layer["mediaType"] for layer in manifest["layers"]] == [HELM_CHART]
    assert manifest["layers"][0]["digest"] == sha256_digest(tgz.read_bytes())
    assert manifest["layers"][0]["annotations"][TITLE] == tgz.name
    assert manifest["annotations"] == {"org.opencontainers.image.version": "0.1.0"}

    assert_blob(registry_url, repo, config.read_bytes())
    assert_blob(registry_url, repo, tgz.read_bytes())
    assert json.loads(get_blob(registry_url, repo, manifest["config"]["digest"]).content) == {
        "name": "mychart", "version": "0.1.0", "apiVersion": "v2",
        "description": "A Helm chart pushed to Cargohold by the oras SDK",
        "type": "application", "appVersion": "1.16.0"}

    # oras's own view of the manifest is the same document.
    assert oras_client.get_manifest(target(registry_url, repo, "0.1.0")) == manifest

    outdir = tmp_path / "pulled"
    files = oras_client.pull(target=target(registry_url, repo, "0.1.0"), outdir=str(outdir))
    assert_pulled(files, {tgz.name: tgz.read_bytes()}, outdir)
    with tarfile.open(files[0], "r:gz") as tar:
        member = tar.extractfile("mychart/Chart.yaml")
        assert member is not None
        assert b"version: 0.1.0" in member.read()
        assert "mychart/templates/deployment.yaml" in tar.getnames()

    # Pushing the same chart again under another tag: oras finds the blobs (HEAD) and skips
    # their upload; the manifest is the same document, so the digest is the same.
    again = oras_client.push(
        target=target(registry_url, repo, "stable"),
        files=[f"{tgz}:{HELM_CHART}"],
        manifest_config=f"{config}:{HELM_CONFIG}",
        manifest_annotations={"org.opencontainers.image.version": "0.1.0"},
        disable_path_validation=True,
    )
    assert assert_push_ok(again, registry_url, repo, "stable") == raw

    # Pulling by digest gives the same content.
    by_digest = tmp_path / "pulled-by-digest"
    files = oras_client.pull(target=target(registry_url, repo, sha256_digest(raw)),
                             outdir=str(by_digest))
    assert_pulled(files, {tgz.name: tgz.read_bytes()}, by_digest)


def test_helm_chart_versions_tags_and_delete(oras_client: Any, registry_url: str, repo: str,
                                             tmp_path: Path) -> None:
    versions = ["0.1.0", "0.2.0", "1.0.0"]
    for version in versions:
        resp, _, _ = push_chart(oras_client, registry_url, repo, tmp_path, version)
        assert_push_ok(resp, registry_url, repo, version)
    container = f"{host_of(registry_url)}/{repo}"
    assert_tag_list(oras_client.get_tags(container), versions)
    first_two = oras_client.get_tags(container, N=2)
    assert len(first_two) == 2
    if not EXTERNAL_URL:  # the reference registry 2.8 ignores n without last
        assert first_two == versions[:2]

    assert oras_client.delete_tags(container, ["0.2.0"]) == ["0.2.0"]
    gone = get_manifest(registry_url, repo, "0.2.0")
    assert gone.status_code == 404, describe(gone)
    assert_tag_list(oras_client.get_tags(container), ["0.1.0", "1.0.0"])
    fetch_manifest(registry_url, repo, "1.0.0")


# --------------------------------------------------------------------------------------------
# OPA bundle
# --------------------------------------------------------------------------------------------

def test_opa_bundle_push_pull(oras_client: Any, registry_url: str, repo: str,
                              tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    files = {
        ".manifest": json.dumps({"revision": uuid.uuid4().hex, "roots": ["authz"]}).encode(),
        "policy.rego": (b"package authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
                        b'allow if input.user == "admin"\n'),
        "data.json": json.dumps({"authz": {"admins": ["alice", "bob"]}}).encode(),
    }
    for name, data in files.items():
        (bundle / name).write_bytes(data)
    config = tmp_path / "opa-config.json"
    config.write_bytes(json.dumps({"revision": "v1", "roots": ["authz"]}).encode())
    media = {".manifest": OPA_MANIFEST_LAYER, "policy.rego": OPA_POLICY_LAYER,
             "data.json": OPA_DATA_LAYER}

    resp = oras_client.push(
        target=target(registry_url, repo, "v1"),
        files=[f"{bundle / name}:{media[name]}" for name in files],
        manifest_config=f"{config}:{OPA_CONFIG}",
        disable_path_validation=True,
    )
    raw = assert_push_ok(resp, registry_url, repo, "v1")
    manifest = json.loads(raw)
    assert manifest["config"]["mediaType"] == OPA_CONFIG
    assert manifest["config"]["digest"] == sha256_digest(config.read_bytes())
    assert [(layer["mediaType"], layer["annotations"][TITLE]) for layer in manifest["layers"]] \
        == [(media[name], name) for name in files]
    for layer, data in zip(manifest["layers"], files.values(), strict=True):
        assert layer["digest"] == sha256_digest(data)
        assert layer["size"] == len(data)
        assert_blob(registry_url, repo, data)
    assert_blob(registry_url, repo, config.read_bytes())

    outdir = tmp_path / "pulled"
    pulled = oras_client.pull(target=target(registry_url, repo, "v1"), outdir=str(outdir))
    assert_pulled(pulled, files, outdir)

    # Restricting the accepted media types to the OCI manifest still works.
    outdir2 = tmp_path / "pulled2"
    pulled = oras_client.pull(target=target(registry_url, repo, "v1"), outdir=str(outdir2),
                              allowed_media_type=[OCI_MANIFEST])
    assert_pulled(pulled, files, outdir2)


# --------------------------------------------------------------------------------------------
# Chunked upload through oras (POST, several PATCHes with Content-Range, PUT ?digest=)
# --------------------------------------------------------------------------------------------

def test_chunked_push_pull(oras_client: Any, registry_url: str, repo: str,
                           tmp_path: Path) -> None:
    payload = os.urandom(300_000)  # 5 chunks of 64 KiB, the last one partial
    blob = tmp_path / "payload.bin"
    blob.write_bytes(payload)
    resp = oras_client.push(target=target(registry_url, repo, "chunked"),
                            files=[f"{blob}:application/octet-stream"],
                            do_chunked=True, chunk_size=64 * 1024,
                            disable_path_validation=True)
    raw = assert_push_ok(resp, registry_url, repo, "chunked")
    manifest = json.loads(raw)
    assert manifest["layers"][0]["digest"] == sha256_digest(payload)
    assert manifest["layers"][0]["mediaType"] == "application/octet-stream"
    assert_blob(registry_url, repo, payload)
    outdir = tmp_path / "pulled"
    files = oras_client.pull(target=target(registry_url, repo, "chunked"), outdir=str(outdir))
    assert_pulled(files, {"payload.bin": payload}, outdir)


# --------------------------------------------------------------------------------------------
# Referrers: subject (through oras) and artifactType (by hand, oras-py cannot set it)
# --------------------------------------------------------------------------------------------

def push_subject_and_referrers(client: Any, registry_url: str, repo: str,
                               tmp_path: Path) -> dict[str, Any]:
    """Push a base artifact, a signature referring to it (oras ``subject=``) and an SBOM
    referrer with ``artifactType`` (hand-built, pushed by digest only)."""
    import oras.oci

    base_file = tmp_path / "artifact.txt"
    base_file.write_bytes(f"the subject {uuid.uuid4().hex}\n".encode())
    resp = client.push(target=target(registry_url, repo, "base"),
                       files=[f"{base_file}:text/plain"], disable_path_validation=True)
    base_raw = assert_push_ok(resp, registry_url, repo, "base")
    subject = descriptor(OCI_MANIFEST, base_raw)

    # (1) the signature, through oras-py's push(subject=...)
    sig_file = tmp_path / "signature.sig"
    sig_file.write_bytes(os.urandom(64))
    sig_config = tmp_path / "sig-config.json"
    sig_config.write_bytes(b'{"signer":"cargohold-tests"}')
    sig_annotations = {"org.example.signed-by": "cargohold-tests"}
    resp = client.push(
        target=target(registry_url, repo, "signature"),
        files=[f"{sig_file}:{SIGNATURE_LAYER}"],
        manifest_config=f"{sig_config}:{SIGNATURE_CONFIG}",
        manifest_annotations=sig_annotations,
        subject=oras.oci.Subject(mediaType=subject["mediaType"], digest=subject["digest"],
                                 size=subject["size"]),
        disable_path_validation=True,
    )
    sig_raw = assert_push_ok(resp, registry_url, repo, "signature")
    sig_manifest = json.loads(sig_raw)
    assert sig_manifest["subject"] == subject
    assert sig_manifest["config"]["mediaType"] == SIGNATURE_CONFIG
    assert sig_manifest["layers"][0]["mediaType"] == SIGNATURE_LAYER

    # (2) the SBOM: artifactType + empty config, pushed by digest only
    sbom = canonical_json({"spdxVersion": "SPDX-2.3", "name": "cargohold-test",
                           "packages": [{"name": "mychart", "versionInfo": "0.1.0"}]})
    push_blob(registry_url, repo, EMPTY_JSON)
    push_blob(registry_url, repo, sbom)
    sbom_annotations = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    sbom_raw = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_ARTIFACT,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor(SBOM_LAYER, sbom, annotations={TITLE: "sbom.spdx.json"})],
        "subject": subject,
        "annotations": sbom_annotations,
    })
    sbom_resp = push_manifest(registry_url, repo, sha256_digest(sbom_raw), sbom_raw)
    assert sbom_resp.headers.get("Docker-Content-Digest") == sha256_digest(sbom_raw)
    stored, parsed = fetch_manifest(registry_url, repo, sha256_digest(sbom_raw))
    assert stored == sbom_raw
    assert parsed["artifactType"] == SBOM_ARTIFACT
    assert parsed["config"]["mediaType"] == OCI_EMPTY
    assert parsed["layers"][0]["mediaType"] == SBOM_LAYER

    # oras pulls both referrers like any other artifact
    outdir = tmp_path / "pulled-sig"
    files = client.pull(target=target(registry_url, repo, "signature"), outdir=str(outdir))
    assert_pulled(files, {"signature.sig": sig_file.read_bytes()}, outdir)
    outdir = tmp_path / "pulled-sbom"
    files = client.pull(target=target(registry_url, repo, sha256_digest(sbom_raw)),
                        outdir=str(outdir))
    assert_pulled(files, {"sbom.spdx.json": sbom}, outdir)

    return {
        "subject": subject,
        "signature": descriptor(OCI_MANIFEST, sig_raw, artifactType=SIGNATURE_CONFIG,
                                annotations=sig_annotations),
        "signature_response": resp,
        "sbom": descriptor(OCI_MANIFEST, sbom_raw, artifactType=SBOM_ARTIFACT,
                           annotations=sbom_annotations),
        "sbom_response": sbom_resp,
    }


def test_subject_and_artifact_type_preserved(oras_client: Any, registry_url: str, repo: str,
                                             tmp_path: Path) -> None:
    push_subject_and_referrers(oras_client, registry_url, repo, tmp_path)


def test_referrers_api(oras_client: Any, registry_url: str, repo: str, tmp_path: Path) -> None:
    if EXTERNAL_URL:
        probe = requests.get(f"{registry_url}/v2/{repo}/referrers/{sha256_digest(b'x')}",
                             timeout=HTTP_TIMEOUT)
        if probe.status_code != 200:
            pytest.skip(f"external registry has no referrers API ({probe.status_code})")
    pushed = push_subject_and_referrers(oras_client, registry_url, repo, tmp_path)
    subject_digest = pushed["subject"]["digest"]
    for key in ("signature_response", "sbom_response"):
        assert pushed[key].headers.get("OCI-Subject") == subject_digest, describe(pushed[key])

    url = f"{registry_url}/v2/{repo}/referrers/{subject_digest}"
    resp = requests.get(url, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_INDEX
    index = resp.json()
    assert index["schemaVersion"] == 2
    assert index.get("mediaType") == OCI_INDEX
    got = sorted(index["manifests"], key=lambda d: d["digest"])
    want = sorted([pushed["signature"], pushed["sbom"]], key=lambda d: d["digest"])
    assert got == want

    resp = requests.get(url, params={"artifactType": SBOM_ARTIFACT}, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["manifests"] == [pushed["sbom"]]
    assert "artifactType" in resp.headers.get("OCI-Filters-Applied", ""), describe(resp)

    unknown = requests.get(f"{registry_url}/v2/{repo}/referrers/{sha256_digest(b'nothing')}",
                           timeout=HTTP_TIMEOUT)
    assert unknown.status_code == 200, describe(unknown)
    assert unknown.json()["manifests"] == []
