"""Real clients against a SECURE Cargohold: skopeo (containers/image, the Bearer token flow) and
the oras Python SDK (Basic and Bearer) log in, push and pull; without credentials they are
refused and nothing changes.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import subprocess
import sys
import tarfile
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from clienthelpers import (
    HTTP_TIMEOUT,
    OCI_INDEX,
    OCI_MANIFEST,
    SKOPEO_TIMEOUT,
    build_image,
    build_multiarch,
    describe,
    layout_ref_descriptor,
    read_layout_blob,
    require_oras,
    require_skopeo,
    sha256_digest,
    write_multiarch_layout,
    write_oci_layout,
)
from conftest import RegistryProcess

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                       reason="access-control tests start their own secure Cargohold server"),
]

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability", "ecr:ListImages"]


@dataclass
class Key:
    id: str
    secret: str


def run_cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                             str(data_dir)], input=stdin, capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 0, f"cargohold {args} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def parse_key(output: str) -> Key:
    values = {}
    for line in output.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            values[name.strip()] = value.strip()
    return Key(values["access key id"], values["secret access key"])


@dataclass
class Registry:
    server: RegistryProcess
    admin: Key
    reader: Key
    work: Path

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin_basic(self) -> tuple[str, str]:
        return (self.admin.id, self.admin.secret)

    def tags(self, repo: str) -> list[str]:
        resp = requests.get(f"{self.url}/v2/{repo}/tags/list", auth=self.admin_basic,
                            timeout=HTTP_TIMEOUT)
        if resp.status_code == 404:
            return []
        assert resp.status_code == 200, describe(resp)
        return list(resp.json().get("tags") or [])

    def catalog(self) -> list[str]:
        resp = requests.get(f"{self.url}/v2/_catalog", auth=self.admin_basic,
                            timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, describe(resp)
        return list(resp.json()["repositories"])

    def manifest(self, repo: str, ref: str) -> requests.Response:
        return requests.get(f"{self.url}/v2/{repo}/manifests/{ref}", auth=self.admin_basic,
                            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
                            timeout=HTTP_TIMEOUT)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = RegistryProcess(tmp_path_factory.mktemp("secure-clients") / "data",
                             anonymous=False)
    server.start()
    try:
        work = tmp_path_factory.mktemp("client-work")
        admin = Key(*server.admin_credentials)
        reader = parse_key(run_cli(server.data_dir, "admin", "users", "create", "reader"))
        document = work / "reader.json"
        document.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": PULL_ACTIONS,
            "Resource": "arn:aws:ecr:*:*:repository/team/*"}]}))
        run_cli(server.data_dir, "admin", "users", "put-policy", "reader", "pull",
                str(document))
        yield Registry(server, admin, reader, work)
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------

def skopeo(home: Path, *args: str, stdin: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """skopeo with a private HOME and an empty default auth file, so only the credentials a
    test passes are ever used."""
    binary = require_skopeo()
    home.mkdir(parents=True, exist_ok=True)
    empty = home / "empty-auth.json"
    if not empty.exists():
        empty.write_text('{"auths": {}}')
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "REGISTRY_AUTH_FILE": str(empty),
           "DOCKER_CONFIG": str(home / ".docker")}
    cmd = [binary, "--insecure-policy", *args]
    try:
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env,
                                timeout=SKOPEO_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"skopeo timed out: {cmd}\n{exc.stdout}\n{exc.stderr}") from exc
    if check:
        assert result.returncode == 0, (
            f"skopeo failed ({result.returncode}): {' '.join(cmd)}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def ref(registry: Registry, repo: str, tag: str) -> str:
    return f"docker://{registry.host}/{repo}:{tag}"


def single_image_layout(path: Path, nonce: str) -> tuple[Any, str]:
    image = build_image("amd64", nonce=nonce)
    write_oci_layout(path, image.blobs, image.manifest, OCI_MANIFEST, "v1")
    return image, image.manifest_digest


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, f"skopeo succeeded:\n{result.stdout}\n{result.stderr}"
    text = result.stderr.lower()
    assert any(word in text for word in ("unauthorized", "authentication required", "denied",
                                         "401", "403")), result.stderr


def test_skopeo_push_and_pull_with_creds(registry: Registry, tmp_path: Path) -> None:
    repo = f"team/skopeo-{uuid.uuid4().hex[:8]}"
    image = build_multiarch(uuid.uuid4().hex)
    layout = tmp_path / "src"
    write_multiarch_layout(layout, image, "v1")
    creds = f"{registry.admin.id}:{registry.admin.secret}"
    skopeo(tmp_path, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           "--dest-creds", creds, f"oci:{layout}:v1", ref(registry, repo, "v1"))
    resp = registry.manifest(repo, "v1")
    assert resp.status_code == 200 and resp.content == image.index, describe(resp)

    raw = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                 ref(registry, repo, "v1")).stdout
    assert raw.encode() == image.index

    out = tmp_path / "pulled"
    skopeo(tmp_path, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           "--src-creds", creds, ref(registry, repo, "v1"), f"oci:{out}:v1")
    assert layout_ref_descriptor(out, "v1")["digest"] == image.index_digest
    for digest, data in image.all_blobs.items():
        assert read_layout_blob(out, digest) == data

    # The pull-only reader pulls it too (repository team/*) ...
    reader = f"{registry.reader.id}:{registry.reader.secret}"
    out2 = tmp_path / "pulled-by-reader"
    skopeo(tmp_path, "copy", "--all", "--src-tls-verify=false", "--src-creds", reader,
           ref(registry, repo, "v1"), f"oci:{out2}:v1")
    assert layout_ref_descriptor(out2, "v1")["digest"] == image.index_digest
    # ... but cannot push or delete.
    other = tmp_path / "other"
    single_image_layout(other, uuid.uuid4().hex)
    assert_refused(skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds", reader,
                          f"oci:{other}:v1", ref(registry, repo, "v2"), check=False))
    assert_refused(skopeo(tmp_path, "delete", "--tls-verify=false", "--creds", reader,
                          ref(registry, repo, "v1"), check=False))
    assert registry.tags(repo) == ["v1"]

    skopeo(tmp_path, "delete", "--tls-verify=false", "--creds", creds,
           f"docker://{registry.host}/{repo}@{image.index_digest}")
    assert registry.manifest(repo, "v1").status_code == 404


def test_skopeo_login_with_temporary_password(registry: Registry, tmp_path: Path) -> None:
    password = run_cli(registry.server.data_dir, "login-password").strip()
    authfile = tmp_path / "auth.json"
    skopeo(tmp_path, "login", "--tls-verify=false", "--authfile", str(authfile),
           "--username", "AWS", "--password-stdin", registry.host, stdin=password + "\n")
    stored = json.loads(authfile.read_text())["auths"][registry.host]["auth"]
    assert base64.b64decode(stored).decode() == f"AWS:{password}"

    repo = f"team/login-{uuid.uuid4().hex[:8]}"
    layout = tmp_path / "src"
    image, digest = single_image_layout(layout, uuid.uuid4().hex)
    skopeo(tmp_path, "copy", "--preserve-digests", "--dest-tls-verify=false",
           "--dest-authfile", str(authfile), f"oci:{layout}:v1", ref(registry, repo, "v1"))
    resp = registry.manifest(repo, "v1")
    assert resp.status_code == 200 and resp.content == image.manifest, describe(resp)
    listed = json.loads(skopeo(tmp_path, "list-tags", "--tls-verify=false", "--authfile",
                               str(authfile), f"docker://{registry.host}/{repo}").stdout)
    assert listed["Tags"] == ["v1"]
    out = tmp_path / "pulled"
    skopeo(tmp_path, "copy", "--src-tls-verify=false", "--src-authfile", str(authfile),
           ref(registry, repo, "v1"), f"oci:{out}:v1")
    assert layout_ref_descriptor(out, "v1")["digest"] == digest

    skopeo(tmp_path, "logout", "--authfile", str(authfile), registry.host)
    assert_refused(skopeo(tmp_path, "inspect", "--tls-verify=false", "--authfile",
                          str(authfile), ref(registry, repo, "v1"), check=False))


def test_skopeo_login_with_wrong_password_fails(registry: Registry, tmp_path: Path) -> None:
    authfile = tmp_path / "auth.json"
    for user, password in [("AWS", "not-a-password"), (registry.admin.id, "wrong")]:
        result = skopeo(tmp_path, "login", "--tls-verify=false", "--authfile", str(authfile),
                        "--username", user, "--password-stdin", registry.host,
                        stdin=password + "\n", check=False)
        assert result.returncode != 0, result.stdout + result.stderr
    assert not authfile.exists() or registry.host not in authfile.read_text()


def test_skopeo_refused_without_credentials(registry: Registry, tmp_path: Path) -> None:
    repo = f"team/anon-{uuid.uuid4().hex[:8]}"
    layout = tmp_path / "src"
    image, _ = single_image_layout(layout, uuid.uuid4().hex)
    creds = f"{registry.admin.id}:{registry.admin.secret}"
    skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds", creds,
           f"oci:{layout}:v1", ref(registry, repo, "v1"))
    before = (registry.catalog(), registry.tags(repo))

    assert_refused(skopeo(tmp_path, "inspect", "--tls-verify=false",
                          ref(registry, repo, "v1"), check=False))
    assert_refused(skopeo(tmp_path, "copy", "--src-tls-verify=false",
                          ref(registry, repo, "v1"), f"oci:{tmp_path / 'out'}:v1",
                          check=False))
    assert_refused(skopeo(tmp_path, "list-tags", "--tls-verify=false",
                          f"docker://{registry.host}/{repo}", check=False))
    other = tmp_path / "other"
    single_image_layout(other, uuid.uuid4().hex)
    assert_refused(skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{other}:v1",
                          ref(registry, repo, "v2"), check=False))
    assert_refused(skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{other}:v1",
                          ref(registry, f"team/new-{uuid.uuid4().hex[:8]}", "v1"),
                          check=False))
    assert_refused(skopeo(tmp_path, "delete", "--tls-verify=false",
                          ref(registry, repo, "v1"), check=False))
    assert_refused(skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds",
                          f"{registry.admin.id}:wrong", f"oci:{other}:v1",
                          ref(registry, repo, "v3"), check=False))
    assert (registry.catalog(), registry.tags(repo)) == before
    assert registry.manifest(repo, "v1").content == image.manifest


def test_skopeo_anonymous_pull_of_a_public_repository(registry: Registry,
                                                      tmp_path: Path) -> None:
    repo = f"public/skopeo-{uuid.uuid4().hex[:8]}"
    layout = tmp_path / "src"
    _, digest = single_image_layout(layout, uuid.uuid4().hex)
    creds = f"{registry.admin.id}:{registry.admin.secret}"
    skopeo(tmp_path, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
           creds, f"oci:{layout}:v1", ref(registry, repo, "v1"))
    assert_refused(skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false",
                          ref(registry, repo, "v1"), check=False))
    document = tmp_path / "public.json"
    document.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": PULL_ACTIONS}]}))
    run_cli(registry.server.data_dir, "admin", "repository-policy", "set", repo,
            str(document))
    out = tmp_path / "pulled"
    skopeo(tmp_path, "copy", "--src-tls-verify=false", ref(registry, repo, "v1"),
           f"oci:{out}:v1")
    assert layout_ref_descriptor(out, "v1")["digest"] == digest
    other = tmp_path / "other"
    single_image_layout(other, uuid.uuid4().hex)
    assert_refused(skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{other}:v1",
                          ref(registry, repo, "v2"), check=False))
    assert registry.tags(repo) == ["v1"]


# --------------------------------------------------------------------------------------------
# The oras Python SDK
# --------------------------------------------------------------------------------------------

class OrasRetried(AssertionError):
    """oras-py wanted to retry a request (after an exception or an HTTP 500)."""


def _no_retry_sleep(seconds: float) -> None:
    raise OrasRetried("oras-py wanted to retry a request; its log line 'Retrying in ... - "
                      "error: ...' in the captured output says why")


@pytest.fixture
def no_oras_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    require_oras()
    import oras.decorator

    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=_no_retry_sleep))


def oras_client(registry: Registry, backend: str = "token") -> Any:
    client_mod = require_oras()
    client = client_mod.OrasClient(hostname=registry.host, insecure=True, tls_verify=False,
                                   auth_backend=backend)
    client.session.trust_env = False
    client.session.request = functools.partial(client.session.request, timeout=HTTP_TIMEOUT)
    return client


def make_chart(root: Path, version: str) -> tuple[Path, Path]:
    chart = root / "mychart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: mychart\nversion: {version}\ntype: application\n")
    (chart / "values.yaml").write_text("replicaCount: 1\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n")
    tgz = root / f"mychart-{version}.tgz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(p for p in chart.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(root).as_posix())
    tgz.write_bytes(buf.getvalue())
    config = root / "config.json"
    config.write_text(json.dumps({"name": "mychart", "version": version, "apiVersion": "v2"}))
    return tgz, config


def push_chart(client: Any, registry: Registry, repo: str, root: Path,
               version: str) -> tuple[Any, Path]:
    tgz, config = make_chart(root / version, version)
    resp = client.push(target=f"{registry.host}/{repo}:{version}",
                       files=[f"{tgz}:{HELM_CHART}"],
                       manifest_config=f"{config}:{HELM_CONFIG}",
                       disable_path_validation=True)
    return resp, tgz


def assert_chart_round_trip(client: Any, registry: Registry, repo: str, root: Path) -> None:
    resp, tgz = push_chart(client, registry, repo, root, "0.1.0")
    assert resp.status_code == 201, describe(resp)
    stored = registry.manifest(repo, "0.1.0")
    assert stored.status_code == 200, describe(stored)
    manifest = stored.json()
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256_digest(tgz.read_bytes())]
    outdir = root / "pulled"
    files = client.pull(target=f"{registry.host}/{repo}:0.1.0", outdir=str(outdir))
    assert [Path(f).name for f in files] == [tgz.name]
    assert Path(files[0]).read_bytes() == tgz.read_bytes()
    assert client.get_tags(f"{registry.host}/{repo}") == ["0.1.0"]


@pytest.mark.usefixtures("no_oras_retries")
def test_oras_basic_auth_push_pull(registry: Registry, tmp_path: Path) -> None:
    client = oras_client(registry, backend="basic")
    client.auth.set_basic_auth(registry.admin.id, registry.admin.secret)
    assert_chart_round_trip(client, registry, f"team/oras-basic-{uuid.uuid4().hex[:8]}",
                            tmp_path)


@pytest.mark.usefixtures("no_oras_retries")
def test_oras_basic_auth_with_temporary_password(registry: Registry, tmp_path: Path) -> None:
    password = run_cli(registry.server.data_dir, "login-password").strip()
    client = oras_client(registry, backend="basic")
    client.auth.set_basic_auth("AWS", password)
    assert_chart_round_trip(client, registry, f"team/oras-temp-{uuid.uuid4().hex[:8]}",
                            tmp_path)


@pytest.mark.usefixtures("no_oras_retries")
def test_oras_bearer_token_push_pull(registry: Registry, tmp_path: Path) -> None:
    """The default token backend: oras-py fetches a token from the realm of the challenge
    with the credentials given to login(), and sends it as Bearer."""
    client = oras_client(registry)
    config = tmp_path / "docker-config.json"
    result = client.login(username=registry.admin.id, password=registry.admin.secret,
                          hostname=registry.host, tls_verify=False, config_path=str(config))
    assert result.get("Status") == "Login Succeeded", result
    seen: list[str] = []
    original = client.session.request

    def spy(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers") or {}
        seen.append(str(headers.get("Authorization", "")).split(" ")[0])
        return original(method, url, *args, **kwargs)

    client.session.request = spy
    assert_chart_round_trip(client, registry, f"team/oras-bearer-{uuid.uuid4().hex[:8]}",
                            tmp_path)
    assert "Bearer" in seen, seen


@pytest.mark.usefixtures("no_oras_retries")
def test_oras_bearer_pull_only_user(registry: Registry, tmp_path: Path) -> None:
    repo = f"team/oras-reader-{uuid.uuid4().hex[:8]}"
    admin = oras_client(registry, backend="basic")
    admin.auth.set_basic_auth(registry.admin.id, registry.admin.secret)
    resp, tgz = push_chart(admin, registry, repo, tmp_path / "admin", "0.1.0")
    assert resp.status_code == 201, describe(resp)

    reader = oras_client(registry)
    reader.auth.set_basic_auth(registry.reader.id, registry.reader.secret)
    files = reader.pull(target=f"{registry.host}/{repo}:0.1.0", outdir=str(tmp_path / "out"))
    assert Path(files[0]).read_bytes() == tgz.read_bytes()
    with pytest.raises((ValueError, AssertionError)):
        push_chart(reader, registry, repo, tmp_path / "reader", "0.2.0")
    assert registry.tags(repo) == ["0.1.0"]


def test_oras_refused_without_credentials(registry: Registry, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    require_oras()
    import oras.decorator

    # Refusals make oras-py retry with long sleeps: skip the sleeping, keep the refusal.
    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=lambda s: None))
    repo = f"team/oras-anon-{uuid.uuid4().hex[:8]}"
    admin = oras_client(registry, backend="basic")
    admin.auth.set_basic_auth(registry.admin.id, registry.admin.secret)
    resp, _ = push_chart(admin, registry, repo, tmp_path / "admin", "0.1.0")
    assert resp.status_code == 201, describe(resp)
    before = (registry.catalog(), registry.tags(repo))

    refused = (ValueError, AssertionError, requests.RequestException)
    client = oras_client(registry)  # no credentials: oras-py asks for an anonymous token
    with pytest.raises(refused):
        push_chart(client, registry, repo, tmp_path / "anonymous", "0.2.0")
    with pytest.raises(refused):
        client.pull(target=f"{registry.host}/{repo}:0.1.0", outdir=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "mychart-0.1.0.tgz").exists()
    with pytest.raises(refused):
        push_chart(client, registry, f"team/oras-new-{uuid.uuid4().hex[:8]}",
                   tmp_path / "anonymous-new", "0.1.0")
    for backend in ("token", "basic"):
        wrong = oras_client(registry, backend=backend)
        wrong.auth.set_basic_auth(registry.admin.id, "wrong")
        with pytest.raises(refused):
            push_chart(wrong, registry, repo, tmp_path / f"wrong-{backend}", "0.3.0")
        with pytest.raises(refused):
            wrong.pull(target=f"{registry.host}/{repo}:0.1.0",
                       outdir=str(tmp_path / f"out-{backend}"))
    assert (registry.catalog(), registry.tags(repo)) == before
