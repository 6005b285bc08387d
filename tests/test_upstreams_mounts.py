"""Replication mounts blobs across repositories at the destination: an image pushed into a
second repository that replicates to the same destinations arrives there by
`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other repo>` (201), not by upload. A mount
the destination refuses (202) falls back to the upload. Counted in the destinations' access
logs: the CNCF registry's, and a second Cargohold's (authenticated: its tokens must grant the
mount's source too)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import requests
from conftest import RegistryProcess
from ecrhelpers import OCI_MANIFEST, Artifact, descriptor, ecr_client, image
from test_upstreams_replication import eventually, fetch
from upstreamhelpers import LoggedRegistry

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60
CNCF_ID, PRIVATE_ID = "444444444444", "555555555555"


def push_image(url: str, repo: str, artifact: Artifact) -> None:
    """Push `artifact` as `<repo>:v1` (its blobs by single-request uploads)."""
    for blob in artifact.blobs:
        requests.post(f"{url}/v2/{repo}/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{url}/v2/{repo}/manifests/v1", data=artifact.manifest,
                        headers={"Content-Type": OCI_MANIFEST}, timeout=TIMEOUT
                        ).status_code == 201


class Registries:
    def __init__(self, source: RegistryProcess, cncf: LoggedRegistry,
                 private: RegistryProcess) -> None:
        self.source = source
        self.cncf = cncf
        self.private = private
        self.private_auth = private.admin_credentials
        self.ecr = ecr_client(source.url, *source.admin_credentials)

    def push(self, repo: str, artifact: Artifact) -> None:
        push_image(self.source.url, repo, artifact)

    def replicated(self, repo: str) -> bool:
        result = self.ecr.describe_image_replication_status(repositoryName=repo,
                                                            imageId={"imageTag": "v1"})
        return {s["status"] for s in result["replicationStatuses"]} == {"COMPLETE"}

    def cncf_blob_requests(self, method: str, repo: str, status: int) -> list[str]:
        """The CNCF registry's logged requests `METHOD /v2/<repo>/blobs/uploads/…` -> status."""
        pattern = rf'"{method} /v2/{re.escape(repo)}/blobs/uploads/(\S*) HTTP/1\.1" {status} '
        return re.findall(pattern, self.cncf.log())

    def private_blob_requests(self, method: str, route: str, repo: str,
                              status: int) -> int:
        """Cargohold's access-log lines for one route, repository and status."""
        return len(re.findall(rf"method={method} route={re.escape(route)} repository="
                              rf"{re.escape(repo)} status={status} ", self.private.log()))


def cli(server: RegistryProcess, *args: str, stdin: str | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                             str(server.data_dir)], input=stdin, text=True,
                            capture_output=True, timeout=TIMEOUT, env=env, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    cncf = LoggedRegistry(tmp_path_factory.mktemp("cncf")).start()
    private = RegistryProcess(tmp_path_factory.mktemp("private") / "data", anonymous=False,
                              env={"CARGOHOLD_ACCESS_LOG": "true"})
    source = RegistryProcess(tmp_path_factory.mktemp("source") / "data",
                             env={"CARGOHOLD_UPSTREAMS__REPLICATION_RETRY_MAX": "1"})
    try:
        private.start()
        source.start()
        key_id, secret = private.admin_credentials
        cli(source, "admin", "replication-destinations", "put", CNCF_ID, "--url", cncf.url)
        cli(source, "admin", "replication-destinations", "put", PRIVATE_ID, "--url",
            private.url, "--username", key_id, "--password-stdin", stdin=secret + "\n")
        ecr_client(source.url, *source.admin_credentials).put_replication_configuration(
            replicationConfiguration={"rules": [{
                "destinations": [{"region": "us-east-1", "registryId": CNCF_ID},
                                 {"region": "us-east-1", "registryId": PRIVATE_ID}],
                "repositoryFilters": [{"filter": "mnt/", "filterType": "PREFIX_MATCH"}]}]})
        yield Registries(source, cncf, private)
    finally:
        source.stop()
        private.stop()
        cncf.stop()


def assert_arrived(registries: Registries, repo: str, artifact: Artifact) -> None:
    auth = registries.private_auth
    for url, credentials in ((registries.cncf.url, None), (registries.private.url, auth)):
        assert fetch(url, f"/v2/{repo}/manifests/v1", credentials).content == artifact.manifest
        for blob in artifact.blobs:
            digest = descriptor("x/y", blob)["digest"]
            assert fetch(url, f"/v2/{repo}/blobs/{digest}", credentials).content == blob


def test_a_second_repository_mounts_the_blobs_the_first_replicated(
        registries: Registries) -> None:
    suffix = uuid.uuid4().hex[:6]
    first, second = f"mnt/first-{suffix}", f"mnt/second-{suffix}"
    artifact = image(layer_size=256 * 1024)
    registries.push(first, artifact)
    assert eventually(lambda: registries.replicated(first))
    registries.push(second, artifact)
    assert eventually(lambda: registries.replicated(second))
    assert_arrived(registries, second, artifact)
    blobs = len(artifact.blobs)
    # The first repository uploaded its blobs (nothing to mount from yet) ...
    assert len(registries.cncf_blob_requests("PUT", first, 201)) == blobs
    # ... the second mounted every one of them from the first, and uploaded none.
    mounts = registries.cncf_blob_requests("POST", second, 201)
    assert len(mounts) == blobs
    queries = [parse_qs(unquote(m.lstrip("?"))) for m in mounts]
    assert sorted(q["mount"][0] for q in queries) == sorted(
        descriptor("x/y", blob)["digest"] for blob in artifact.blobs)
    assert all(q["from"] == [first] for q in queries)
    assert registries.cncf_blob_requests("PUT", second, 201) == []
    route = "/v2/{name}/blobs/uploads/"
    assert registries.private_blob_requests("POST", route, second, 201) == blobs
    assert registries.private_blob_requests("POST", route, second, 202) == 0
    assert registries.private_blob_requests("PUT", route + "{upload_id}", second, 201) == 0
    assert registries.private_blob_requests("PUT", route + "{upload_id}", first, 201) == blobs


def test_a_refused_mount_falls_back_to_the_upload(registries: Registries) -> None:
    suffix = uuid.uuid4().hex[:6]
    first, third = f"mnt/kept-{suffix}", f"mnt/third-{suffix}"
    artifact = image(layer_size=64 * 1024)
    registries.push(first, artifact)
    assert eventually(lambda: registries.replicated(first))
    # The destination loses the blobs of the first repository: a mount from there is refused.
    for blob in artifact.blobs:
        digest = descriptor("x/y", blob)["digest"]
        gone = requests.delete(f"{registries.cncf.url}/v2/{first}/blobs/{digest}",
                               timeout=TIMEOUT)
        assert gone.status_code == 202, gone.text
    registries.push(third, artifact)
    assert eventually(lambda: registries.replicated(third))
    assert_arrived(registries, third, artifact)
    refused: list[Any] = registries.cncf_blob_requests("POST", third, 202)
    assert len(refused) == len(artifact.blobs)
    assert all("mount=sha256" in m for m in refused)
    assert len(registries.cncf_blob_requests("PUT", third, 201)) == len(artifact.blobs)
