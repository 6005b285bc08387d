"""Helpers for the ECR API tests: a secure Cargohold per test module, boto3 clients signed with
its bootstrap administrator's key, limited users made with the CLI, the real `aws` CLI, and raw
SigV4-signed requests for what boto3 refuses to send.

Everything talks to 127.0.0.1 only. botocore retries are off, so a server error is never hidden
behind a retry.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import RegistryProcess

TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
REGION = "us-east-1"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
AMZ_JSON = "application/x-amz-json-1.1"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

EXTERNAL = bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL"))
SKIP_EXTERNAL = pytest.mark.skipif(
    EXTERNAL, reason="the ECR API tests start their own secure Cargohold server")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def describe(resp: requests.Response) -> str:
    body = resp.content[:1500].decode(errors="replace")
    return (f"{resp.request.method} {resp.url} -> {resp.status_code}\n"
            f"headers: {dict(resp.headers)}\nbody: {body}")


def unique(prefix: str = "ecr") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


def assert_aws_error(resp: requests.Response, name: str) -> dict[str, Any]:
    """An AWS JSON 1.1 error: 4xx, `{"__type": name, "message": ...}`."""
    assert 400 <= resp.status_code < 500, describe(resp)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == AMZ_JSON, describe(resp)
    body = resp.json()
    assert isinstance(body, dict), describe(resp)
    assert body.get("__type", "").split("#")[-1] == name, describe(resp)
    assert isinstance(body.get("message"), str) and body["message"], describe(resp)
    return body


def poll(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2) -> Any:
    """Call `check` until it returns something truthy (bounded); return that, or the last."""
    deadline = time.monotonic() + timeout
    result = check()
    while not result and time.monotonic() < deadline:
        time.sleep(interval)
        result = check()
    return result


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------

@dataclass
class Artifact:
    """A manifest and the blobs it needs."""

    manifest: bytes
    blobs: list[bytes]
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def size(self) -> int:
        """ECR's imageSizeInBytes: the manifest plus every distinct blob it lists."""
        distinct = {sha256(blob): len(blob) for blob in self.blobs}
        return len(self.manifest) + sum(distinct.values())


def image(nonce: str | None = None, *, config_media_type: str = OCI_CONFIG,
          artifact_type: str | None = None, subject: dict[str, Any] | None = None,
          layer_size: int = 512, config: bytes | None = None) -> Artifact:
    """A small OCI image manifest with one config and one layer, both unique to `nonce`."""
    nonce = nonce or uuid.uuid4().hex
    if config is None:
        config = canonical({"architecture": "amd64", "os": "linux", "nonce": nonce,
                            "rootfs": {"type": "layers", "diff_ids": []}})
    layer = (f"layer {nonce} ".encode() * (layer_size // 20 + 1))[:layer_size]
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(config_media_type, config),
        "layers": [descriptor(OCI_LAYER, layer)],
        "annotations": {"org.example.nonce": nonce},
    }
    if artifact_type:
        document["artifactType"] = artifact_type
    if subject:
        document["subject"] = subject
    return Artifact(canonical(document), [config, layer])


def index_of(*children: Artifact) -> Artifact:
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [descriptor(OCI_MANIFEST, child.manifest,
                                         platform={"architecture": arch, "os": "linux"})
                              for child, arch in zip(children, ("amd64", "arm64", "s390x"),
                                                     strict=False)]}
    return Artifact(canonical(document), [], OCI_INDEX)


# --------------------------------------------------------------------------------------------
# The secure server and its clients
# --------------------------------------------------------------------------------------------

def ecr_client(url: str, key_id: str, secret: str, region: str = REGION) -> Any:
    return boto3.client(
        "ecr", endpoint_url=url, region_name=region, aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
                      read_timeout=120))


@dataclass
class Ecr:
    server: RegistryProcess
    key_id: str
    secret: str
    client: Any
    http: requests.Session
    users: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def credentials_file(self) -> Path:
        return self.server.data_dir / "admin-credentials"

    @property
    def registry_id(self) -> str:
        return str(self.client.describe_registry()["registryId"])

    def client_for(self, key_id: str, secret: str, region: str = REGION) -> Any:
        return ecr_client(self.url, key_id, secret, region)

    # -- repositories and content over ECR and /v2 (as the administrator) --------------------

    def new_repo(self, prefix: str = "ecr", **settings: Any) -> str:
        name = unique(prefix)
        self.client.create_repository(repositoryName=name, **settings)
        return name

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.url + path
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, url, **kwargs)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                            headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 201, describe(resp)
        return digest

    def put_manifest(self, repo: str, ref: str, body: bytes,
                     media_type: str = OCI_MANIFEST) -> requests.Response:
        return self.request("PUT", f"/v2/{repo}/manifests/{ref}", data=body,
                            headers={"Content-Type": media_type})

    def push(self, repo: str, artifact: Artifact, *tags: str) -> Artifact:
        """Blobs then the manifest over /v2; by digest when no tag is given."""
        for blob in artifact.blobs:
            self.push_blob(repo, blob)
        for ref in tags or (artifact.digest,):
            resp = self.put_manifest(repo, ref, artifact.manifest, artifact.media_type)
            assert resp.status_code == 201, describe(resp)
        return artifact

    def details(self, repo: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
        """DescribeImages (all pages), keyed by digest."""
        out: dict[str, dict[str, Any]] = {}
        for page in self.client.get_paginator("describe_images").paginate(
                repositoryName=repo, **kwargs):
            for detail in page["imageDetails"]:
                out[detail["imageDigest"]] = detail
        return out

    # -- users, the CLI and the aws CLI ------------------------------------------------------

    def cli(self, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
        # The server's own settings (a node of a pair: its PostgreSQL and blob store), as an
        # operator on that host runs the command.
        env.update(self.server.env)
        result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                                 str(self.data_dir)], input=stdin, capture_output=True,
                                text=True, timeout=CLI_TIMEOUT, env=env, check=False)
        if check:
            assert result.returncode == 0, (f"cargohold {' '.join(args)} failed "
                                            f"({result.returncode}):\n{result.stdout}\n"
                                            f"{result.stderr}")
        return result

    def create_user(self, name: str, *documents: str) -> tuple[str, str]:
        """A user with an access key and the given identity policies; (key id, secret)."""
        out = self.cli("admin", "users", "create", name).stdout
        values = {}
        for line in out.splitlines():
            label, sep, value = line.partition(":")
            if sep:
                values[label.strip()] = value.strip()
        key = (values["access key id"], values["secret access key"])
        for index, document in enumerate(documents):
            path = self.data_dir.parent / f"policy-{uuid.uuid4().hex}.json"
            path.write_text(document)
            self.cli("admin", "users", "put-policy", name, f"p{index}", str(path))
        self.users[name] = key
        return key

    def user_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.registry_id}:user/{name}"

    def aws_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_SHARED_CREDENTIALS_FILE=str(self.credentials_file),
                   AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE="/dev/null",
                   AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard", AWS_PAGER="")
        return env

    def aws(self, *args: str, check: bool = True,
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """`aws ecr ARGS --endpoint-url URL` with the administrator's credentials file."""
        cmd = ["aws", "ecr", *args, "--endpoint-url", self.url]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                    env=self.aws_env(), check=False,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s") from exc
        if check:
            assert result.returncode == 0, (f"{' '.join(cmd)} failed ({result.returncode}):\n"
                                            f"stdout:\n{result.stdout}\n"
                                            f"stderr:\n{result.stderr}")
        return result

    # -- raw SigV4 ---------------------------------------------------------------------------

    def signed(self, operation: str | None, body: bytes | str | dict[str, Any] = b"{}", *,
               key_id: str | None = None, secret: str | None = None, region: str = REGION,
               service: str = "ecr", when: dt.datetime | None = None,
               headers: dict[str, str] | None = None, target: str | None = None,
               sign: bool = True) -> requests.Response:
        """POST / with X-Amz-Target PREFIX.operation (or `target` verbatim), SigV4-signed with
        the given (default: the administrator's) key, at `when` (default: now)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": AMZ_JSON, **(headers or {})}
        if target is None and operation is not None:
            target = f"{TARGET_PREFIX}.{operation}"
        if target is not None:
            all_headers["X-Amz-Target"] = target
        request = AWSRequest(method="POST", url=self.url + "/", data=data, headers=all_headers)
        if sign:
            signer = SigV4Auth(Credentials(key_id or self.key_id, secret or self.secret),
                               service, region)
            if when is None:
                signer.add_auth(request)
            else:
                naive = when.astimezone(dt.UTC).replace(tzinfo=None)
                with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
                    signer.add_auth(request)
        prepared = request.prepare()
        return requests.post(self.url + "/", data=data, headers=dict(prepared.headers),
                             timeout=TIMEOUT)

    # -- state, for "nothing changed" ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        repositories = []
        for page in self.client.get_paginator("describe_repositories").paginate():
            repositories.extend(page["repositories"])
        state: dict[str, Any] = {}
        for repo in repositories:
            name = repo["repositoryName"]
            images = {digest: (sorted(d.get("imageTags", [])), d["imageSizeInBytes"])
                      for digest, d in self.details(name).items()}
            tags = self.client.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
            try:
                text = self.client.get_repository_policy(repositoryName=name)["policyText"]
            except ClientError as exc:
                assert error_code(exc) == "RepositoryPolicyNotFoundException"
                text = None
            state[name] = {"repository": repo, "images": images, "tags": tags, "policy": text}
        return state


def start_ecr(tmp_path_factory: pytest.TempPathFactory,
              extra_args: list[str] | None = None) -> Iterator[Ecr]:
    """A secure Cargohold (no --anonymous) and an administrator's boto3 client."""
    if EXTERNAL:
        pytest.skip("the ECR API tests start their own secure Cargohold server")
    server = RegistryProcess(tmp_path_factory.mktemp("ecr") / "data", extra_args,
                             anonymous=False)
    server.start()
    try:
        key_id, secret = server.admin_credentials
        http = requests.Session()
        http.auth = (key_id, secret)
        yield Ecr(server, key_id, secret, ecr_client(server.url, key_id, secret), http)
    finally:
        server.stop()


def basic_login(url: str, user: str, password: str) -> requests.Response:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return requests.get(url + "/v2/", headers={"Authorization": f"Basic {token}"},
                        timeout=TIMEOUT)
