"""The walkthrough ECR users know, end to end, with the real `aws` CLI, skopeo and the `oras`
SDK against a secure Cargohold (issue 4):

create-repository; get-login-password piped into a registry login (skopeo and oras); push a Helm
chart and an OPA bundle with oras; batch-get-image prints the pushed manifest; describe-images
finds the chart by artifactMediaType, with the right sizes; pull both back; batch-delete-image;
delete-repository.
"""

from __future__ import annotations

import functools
import io
import json
import shlex
import subprocess
import tarfile
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from clienthelpers import (
    OCI_MANIFEST,
    build_image,
    require_oras,
    require_skopeo,
    write_oci_layout,
)
from ecrhelpers import (
    HELM_CHART,
    HELM_CONFIG,
    SKIP_EXTERNAL,
    TIMEOUT,
    Ecr,
    describe,
    image,
    sha256,
    start_ecr,
)

pytestmark = [pytest.mark.clients, SKIP_EXTERNAL]

OPA_CONFIG = "application/vnd.cncf.openpolicyagent.config.v1+json"
OPA_MANIFEST_LAYER = "application/vnd.cncf.openpolicyagent.manifest.layer.v1+json"
OPA_POLICY_LAYER = "application/vnd.cncf.openpolicyagent.policy.layer.v1+rego"
OPA_DATA_LAYER = "application/vnd.cncf.openpolicyagent.data.layer.v1+json"
SKOPEO_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


class OrasRetried(AssertionError):
    """oras-py wanted to retry (after an HTTP 500 or an exception): a server bug."""


def _no_retry_sleep(seconds: float) -> None:
    raise OrasRetried("oras-py wanted to retry a request; a working registry on 127.0.0.1 "
                      "needs no retries (its log line says which request failed)")


def make_chart(root: Path, version: str) -> tuple[Path, Path]:
    """A packaged chart (`helm package` layout) and its OCI config (Chart.yaml as JSON)."""
    chart_yaml = (f"apiVersion: v2\nname: walkthrough\nversion: {version}\n"
                  "description: pushed by the ECR walkthrough\ntype: application\n")
    files = {
        "walkthrough/Chart.yaml": chart_yaml.encode(),
        "walkthrough/values.yaml": b"replicaCount: 1\n",
        "walkthrough/templates/configmap.yaml": (
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    root.mkdir(parents=True, exist_ok=True)
    tgz = root / f"walkthrough-{version}.tgz"
    tgz.write_bytes(buf.getvalue())
    config = root / "chart-config.json"
    config.write_text(json.dumps({"apiVersion": "v2", "name": "walkthrough",
                                  "version": version, "type": "application"}))
    return tgz, config


def make_bundle(root: Path) -> tuple[dict[str, Path], Path]:
    root.mkdir(parents=True, exist_ok=True)
    contents = {
        ".manifest": json.dumps({"revision": uuid.uuid4().hex, "roots": ["authz"]}).encode(),
        "policy.rego": b'package authz\n\nimport rego.v1\n\ndefault allow := false\n\n'
                       b'allow if input.user == "admin"\n',
        "data.json": json.dumps({"authz": {"admins": ["alice"]}}).encode(),
    }
    paths = {}
    for name, data in contents.items():
        (root / name).write_bytes(data)
        paths[name] = root / name
    config = root.parent / "opa-config.json"
    config.write_text(json.dumps({"revision": "v1", "roots": ["authz"]}))
    return paths, config


def pulled(files: list[str], outdir: Path) -> dict[str, bytes]:
    return {Path(f).relative_to(outdir.resolve()).as_posix(): Path(f).read_bytes()
            for f in files}


def skopeo_login(ecr: Ecr, authfile: Path) -> subprocess.CompletedProcess[str]:
    """`aws ecr get-login-password | skopeo login --password-stdin`, a real shell pipe."""
    skopeo = require_skopeo()
    pipeline = (f"aws ecr get-login-password --endpoint-url {shlex.quote(ecr.url)} | "
                f"{shlex.quote(skopeo)} login --tls-verify=false --authfile "
                f"{shlex.quote(str(authfile))} --username AWS --password-stdin "
                f"{shlex.quote(ecr.host)}")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True,
                            text=True, timeout=SKOPEO_TIMEOUT, env=ecr.aws_env(),
                            check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{pipeline}\n{result.stdout}\n{result.stderr}"
    return result


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [require_skopeo(), "--insecure-policy", *args]
    result = subprocess.run(cmd, capture_output=True, timeout=SKOPEO_TIMEOUT, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"{' '.join(cmd)}\n{result.stdout!r}\n"
                                    f"{result.stderr.decode(errors='replace')}")
    return result


def logged_in_oras(oras_client: Any, ecr: Ecr, password: str, tmp_path: Path,
                   backend: str) -> Any:
    client = oras_client.OrasClient(hostname=ecr.host, insecure=True, tls_verify=False,
                                    auth_backend=backend)
    client.session.trust_env = False
    client.session.request = functools.partial(client.session.request, timeout=TIMEOUT)
    login = client.login(username="AWS", password=password, hostname=ecr.host,
                         tls_verify=False, config_path=str(tmp_path / "docker-config.json"))
    assert login.get("Status") == "Login Succeeded", login
    return client


def test_ecr_walkthrough(ecr: Ecr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oras_client = require_oras()
    import oras.decorator

    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=_no_retry_sleep))
    name = f"walkthrough/{uuid.uuid4().hex[:10]}"

    # 1. create-repository
    created = json.loads(ecr.aws("create-repository", "--repository-name", name,
                                 "--image-tag-mutability", "MUTABLE",
                                 "--output", "json").stdout)["repository"]
    assert created["repositoryName"] == name
    assert created["repositoryUri"] == f"{ecr.host}/{name}"
    assert created["repositoryArn"].endswith(f":repository/{name}")

    # 2. get-login-password into a registry login: skopeo (a shell pipe) and oras
    authfile = tmp_path / "auth.json"
    skopeo_login(ecr, authfile)
    assert ecr.host in json.loads(authfile.read_text())["auths"]
    password = ecr.aws("get-login-password").stdout.strip()
    assert password and "\n" not in password
    # (oras-py's Basic backend: the token backend's own flow is test_oras_token_login_push)
    client = logged_in_oras(oras_client, ecr, password, tmp_path, backend="basic")

    # 3. push a Helm chart and an OPA bundle with oras
    tgz, chart_config = make_chart(tmp_path / "chart", "0.1.0")
    resp = client.push(target=f"{ecr.host}/{name}:0.1.0", files=[f"{tgz}:{HELM_CHART}"],
                       manifest_config=f"{chart_config}:{HELM_CONFIG}",
                       disable_path_validation=True)
    assert resp.status_code == 201, describe(resp)
    chart_digest = resp.headers["Docker-Content-Digest"]
    bundle, opa_config = make_bundle(tmp_path / "bundle")
    media = {".manifest": OPA_MANIFEST_LAYER, "policy.rego": OPA_POLICY_LAYER,
             "data.json": OPA_DATA_LAYER}
    resp = client.push(target=f"{ecr.host}/{name}:policy-v1",
                       files=[f"{path}:{media[key]}" for key, path in bundle.items()],
                       manifest_config=f"{opa_config}:{OPA_CONFIG}",
                       disable_path_validation=True)
    assert resp.status_code == 201, describe(resp)
    bundle_digest = resp.headers["Docker-Content-Digest"]

    # ... and an ordinary image with skopeo, logged in by the pipe above
    layout = tmp_path / "layout"
    plain = build_image("amd64", nonce=uuid.uuid4().hex, layer_count=1)
    write_oci_layout(layout, plain.blobs, plain.manifest, OCI_MANIFEST, "v1")
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-authfile",
           str(authfile), f"oci:{layout}:v1", f"docker://{ecr.host}/{name}:app")
    listed = json.loads(skopeo("list-tags", "--tls-verify=false", "--authfile", str(authfile),
                               f"docker://{ecr.host}/{name}").stdout)
    assert sorted(listed["Tags"]) == ["0.1.0", "app", "policy-v1"]

    # 4. batch-get-image prints the pushed manifest
    out = ecr.aws("batch-get-image", "--repository-name", name, "--image-ids",
                  "imageTag=0.1.0", "--query", "images[].imageManifest",
                  "--output", "text").stdout
    stored = ecr.request("GET", f"/v2/{name}/manifests/0.1.0",
                         headers={"Accept": OCI_MANIFEST}).content
    assert sha256(stored) == chart_digest
    assert out.rstrip("\n") == stored.decode().rstrip("\n")
    chart_manifest = json.loads(out)
    assert chart_manifest["config"]["mediaType"] == HELM_CONFIG
    assert [layer["mediaType"] for layer in chart_manifest["layers"]] == [HELM_CHART]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--authfile", str(authfile),
                 f"docker://{ecr.host}/{name}:0.1.0").stdout
    assert raw == stored

    # 5. describe-images finds the chart by its artifactMediaType, with its size
    query = f"imageDetails[?artifactMediaType=='{HELM_CONFIG}']"
    charts = json.loads(ecr.aws("describe-images", "--repository-name", name, "--query", query,
                                "--output", "json").stdout)
    assert [c["imageDigest"] for c in charts] == [chart_digest], charts
    [chart] = charts
    assert chart["imageTags"] == ["0.1.0"]
    assert chart["imageManifestMediaType"] == OCI_MANIFEST
    assert chart["imageSizeInBytes"] == (len(stored) + chart_config.stat().st_size
                                         + tgz.stat().st_size)
    everything = json.loads(ecr.aws("describe-images", "--repository-name", name,
                                    "--output", "json").stdout)["imageDetails"]
    by_digest = {d["imageDigest"]: d for d in everything}
    assert set(by_digest) == {chart_digest, bundle_digest, sha256(plain.manifest)}
    opa = by_digest[bundle_digest]
    assert opa["artifactMediaType"] == OPA_CONFIG
    opa_manifest = ecr.request("GET", f"/v2/{name}/manifests/policy-v1",
                               headers={"Accept": OCI_MANIFEST}).content
    assert opa["imageSizeInBytes"] == (len(opa_manifest) + opa_config.stat().st_size
                                       + sum(p.stat().st_size for p in bundle.values()))
    assert by_digest[sha256(plain.manifest)]["imageSizeInBytes"] == (
        len(plain.manifest) + sum(len(b) for b in plain.blobs.values()))
    policies = json.loads(ecr.aws(
        "describe-images", "--repository-name", name, "--query",
        f"imageDetails[?artifactMediaType=='{OPA_CONFIG}'].imageTags[]",
        "--output", "json").stdout)
    assert policies == ["policy-v1"]

    # 6. pull both back with oras
    out_chart = tmp_path / "pulled-chart"
    files = client.pull(target=f"{ecr.host}/{name}:0.1.0", outdir=str(out_chart))
    assert pulled(files, out_chart) == {tgz.name: tgz.read_bytes()}
    out_bundle = tmp_path / "pulled-bundle"
    files = client.pull(target=f"{ecr.host}/{name}@{bundle_digest}", outdir=str(out_bundle))
    assert pulled(files, out_bundle) == {key: path.read_bytes() for key, path in bundle.items()}

    # 7. batch-delete-image
    deleted = json.loads(ecr.aws("batch-delete-image", "--repository-name", name,
                                 "--image-ids", "imageTag=0.1.0", "imageTag=policy-v1",
                                 f"imageDigest={sha256(plain.manifest)}",
                                 "--output", "json").stdout)
    assert deleted["failures"] == []
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in deleted["imageIds"]) == sorted(
        [(chart_digest, "0.1.0"), (bundle_digest, "policy-v1"),
         (sha256(plain.manifest), "app")])
    left = json.loads(ecr.aws("describe-images", "--repository-name", name,
                              "--output", "json").stdout)
    assert left["imageDetails"] == []
    resp = ecr.request("GET", f"/v2/{name}/manifests/0.1.0", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 404, describe(resp)

    # 8. delete-repository
    gone = json.loads(ecr.aws("delete-repository", "--repository-name", name,
                              "--output", "json").stdout)["repository"]
    assert gone["repositoryName"] == name
    missing = ecr.aws("describe-repositories", "--repository-names", name, check=False)
    assert missing.returncode != 0
    assert "RepositoryNotFoundException" in missing.stderr, missing.stderr


def test_aws_cli_errors_and_pagination(ecr: Ecr) -> None:
    """The awscli's own view: ECR exception names on stderr, and its automatic pagination
    over describe-images (--page-size) returns every image once."""
    name = ecr.new_repo("awscli")
    pushed = {ecr.push(name, image(f"awscli-{i}-{uuid.uuid4().hex}")).digest
              for i in range(7)}
    digests = json.loads(ecr.aws("describe-images", "--repository-name", name, "--page-size",
                                 "2", "--query", "imageDetails[].imageDigest",
                                 "--output", "json").stdout)
    assert sorted(digests) == sorted(pushed)
    ids = json.loads(ecr.aws("list-images", "--repository-name", name, "--page-size", "3",
                             "--output", "json").stdout)["imageIds"]
    assert sorted(i["imageDigest"] for i in ids) == sorted(pushed)
    again = ecr.aws("create-repository", "--repository-name", name, check=False)
    assert again.returncode != 0 and "RepositoryAlreadyExistsException" in again.stderr
    notfound = ecr.aws("describe-images", "--repository-name", name, "--image-ids",
                       "imageTag=nope", check=False)
    assert notfound.returncode != 0 and "ImageNotFoundException" in notfound.stderr



def test_oras_token_login_push(ecr: Ecr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`aws ecr get-login-password` into oras-py's default (token) backend, then a push.

    oras-py first HEADs the blob with a pull-scoped token; for the upload it needs push, and
    it asks for a new token only when the registry answers 401 with a Bearer challenge naming
    the missing scope (Docker token auth: `error="insufficient_scope"`). A 403 without a
    challenge leaves it stuck."""
    oras_client = require_oras()
    import oras.decorator

    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=_no_retry_sleep))
    password = ecr.aws("get-login-password").stdout.strip()
    client = logged_in_oras(oras_client, ecr, password, tmp_path, backend="token")
    name = ecr.new_repo("oras-token")
    tgz, config = make_chart(tmp_path / "chart", "1.0.0")
    resp = client.push(target=f"{ecr.host}/{name}:1.0.0", files=[f"{tgz}:{HELM_CHART}"],
                       manifest_config=f"{config}:{HELM_CONFIG}", disable_path_validation=True)
    assert resp.status_code == 201, describe(resp)
    files = client.pull(target=f"{ecr.host}/{name}:1.0.0", outdir=str(tmp_path / "out"))
    assert pulled(files, tmp_path / "out") == {tgz.name: tgz.read_bytes()}


def test_insufficient_scope_token_gets_a_challenge(ecr: Ecr) -> None:
    """The same at the HTTP level: a Bearer token that lacks `push` for an upload is answered
    with a challenge, `WWW-Authenticate: Bearer ...scope="repository:NAME:pull,push"`, so
    clients fetch a wider token (docker, oras, helm all rely on it). docker/distribution sends
    it with 401, RFC 6750 (insufficient_scope) with 403; oras-py refreshes its token on 403."""
    name = ecr.new_repo("scope")
    resp = ecr.request("GET", "/v2/token",
                       params={"service": "cargohold", "scope": f"repository:{name}:pull"})
    assert resp.status_code == 200, describe(resp)
    token = resp.json()["token"]
    upload = requests.post(f"{ecr.url}/v2/{name}/blobs/uploads/", timeout=TIMEOUT,
                           headers={"Authorization": f"Bearer {token}"})
    assert upload.status_code in (401, 403), describe(upload)
    challenge = upload.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer "), describe(upload)
    assert f'repository:{name}:pull,push' in challenge, describe(upload)
    assert 'error="insufficient_scope"' in challenge, describe(upload)
    wider = ecr.request("GET", "/v2/token", params={
        "service": "cargohold", "scope": f"repository:{name}:pull,push"}).json()["token"]
    upload = requests.post(f"{ecr.url}/v2/{name}/blobs/uploads/", timeout=TIMEOUT,
                           headers={"Authorization": f"Bearer {wider}"})
    assert upload.status_code == 202, describe(upload)
