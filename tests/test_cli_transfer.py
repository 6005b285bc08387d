"""Transfers: chunked uploads that resume after a broken connection, concurrency, skipping
blobs the registry has, constant memory, and the ECR-compatible `images` path."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.clihelpers import Cli, FakeEcr, FaultyProxy, host_of, shared_reference, write_files


@pytest.fixture(params=["cargohold", "reference"])
def upstream(request: pytest.FixtureRequest, registry_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "cargohold":
        return registry_url
    return shared_reference(tmp_path_factory).url


def request_id(upstream: str, cli: Cli) -> str:
    """"reference" when ``upstream`` is the CNCF registry of this session."""
    from tests.clihelpers import _SHARED

    return "reference" if any(s.url == upstream for s in _SHARED.values()) else "cargohold"


@pytest.fixture
def proxy(upstream: str) -> FaultyProxy:
    server = FaultyProxy(upstream).start()
    yield server
    server.stop()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "docker-config", env={"CARGOHOLD_CHUNK_SIZE": str(64 * 1024)})


def blob(upstream: str, repo: str, digest: str) -> bytes:
    resp = requests.get(f"{upstream}/v2/{repo}/blobs/{digest}", timeout=30)
    assert resp.status_code == 200
    return resp.content


@pytest.mark.parametrize("forward", [False, True], ids=["lost-request", "lost-answer"])
def test_chunked_upload_resumes_after_broken_connection(cli: Cli, proxy: FaultyProxy,
                                                        upstream: str, tmp_path: Path,
                                                        forward: bool) -> None:
    data = os.urandom(300 * 1024)  # five 64 KiB chunks
    write_files(tmp_path, {"big.bin": data})
    proxy.drop_patch, proxy.forward_dropped = 3, forward
    repo = f"resume/{uuid.uuid4().hex[:8]}"
    pushed = cli.json("push", f"{proxy.host}/{repo}:1", str(tmp_path / "big.bin"))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert pushed["layers"][0]["digest"] == digest
    assert blob(upstream, repo, digest) == data
    methods = [(m, path) for m, path, _ in proxy.requests if "/blobs/uploads/" in path]
    patches = [(path.split("?")[0], h.get("Content-Range"))
               for m, path, h in proxy.requests if m == "PATCH"]
    # after the cut the client asks the session where it stands (GET on the Location) ...
    assert any(m == "GET" for m, _ in methods), methods
    assert patches[0][1] == "0-65535"
    sessions = list(dict.fromkeys(session for session, _ in patches))
    if forward and "reference" in request_id(upstream, cli):
        # The CNCF registry keeps the offset in a signed `_state` query parameter; the lost
        # answer carried the new one, so the session cannot be asked any more: a fresh
        # session starts from the beginning.
        assert len(sessions) == 2, patches
        assert next(r for s, r in patches if s == sessions[1]) == "0-65535"
    else:
        # ... and goes on in the same session from the registry's Range, sending nothing
        # twice from the start
        assert len(sessions) == 1, patches
        resumed_at = int(patches[3][1].split("-")[0])
        assert resumed_at == (3 if forward else 2) * 65536, patches
    out = tmp_path / "out"
    cli("pull", f"{proxy.host}/{repo}:1", "-o", str(out))
    assert (out / "big.bin").read_bytes() == data


def test_layers_upload_concurrently_and_existing_blobs_are_skipped(
        cli: Cli, proxy: FaultyProxy, tmp_path: Path) -> None:
    files = {f"f{i}.bin": os.urandom(20_000) for i in range(4)}
    write_files(tmp_path, files)
    proxy.slow_puts = 0.4
    repo = f"conc/{uuid.uuid4().hex[:8]}"
    paths = [str(tmp_path / name) for name in files]
    first = cli.json("push", f"{proxy.host}/{repo}:1", *paths, "--concurrency", "4")
    assert proxy.max_inflight >= 2, proxy.max_inflight
    assert {layer["upload"] for layer in first["layers"]} == {"uploaded"}
    before = len([1 for m, p, _ in proxy.requests if m == "PUT" and "/uploads/" in p])
    second = cli.json("push", f"{proxy.host}/{repo}:2", *paths)
    assert {layer["upload"] for layer in second["layers"]} == {"exists"}
    after = len([1 for m, p, _ in proxy.requests if m == "PUT" and "/uploads/" in p])
    assert after == before  # HEAD found every blob: no upload at all
    assert second["digest"] == first["digest"]


def test_push_and_pull_in_constant_memory(tmp_path: Path, registry_url: str) -> None:
    size = 48 * 1024 * 1024
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            handle.write(block)
    cli = Cli(tmp_path / "dc")  # default 16 MiB chunks
    repo = f"mem/{uuid.uuid4().hex[:8]}"
    host = host_of(registry_url)
    tracemalloc.start()
    try:
        cli("push", f"{host}/{repo}:1", str(big), "--no-progress")
        _, push_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        cli("pull", f"{host}/{repo}:1", "-o", str(tmp_path / "out"), "--no-progress")
        _, pull_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert push_peak < 12 * 1024 * 1024, push_peak
    assert pull_peak < 12 * 1024 * 1024, pull_peak
    assert (tmp_path / "out" / "big.bin").stat().st_size == size


def test_images_uses_an_ecr_compatible_api(tmp_path: Path) -> None:
    details = [
        {"registryId": "000000000000", "repositoryName": "team/app",
         "imageDigest": "sha256:" + "a" * 64, "imageTags": ["v1", "latest"],
         "imageSizeInBytes": 1234, "imagePushedAt": 1700000000.0,
         "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactMediaType": "application/vnd.cncf.helm.config.v1+json"},
        {"registryId": "000000000000", "repositoryName": "team/app",
         "imageDigest": "sha256:" + "b" * 64, "imageSizeInBytes": 99,
         "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactMediaType": "application/spdx+json"},
    ]
    ecr = FakeEcr(details).start()
    try:
        cli = Cli(tmp_path / "dc")
        got = cli.json("images", f"{ecr.host}/team/app", "--tag-status", "tagged")
        assert got["source"] == "ecr"
        assert [d["imageDigest"] for d in got["imageDetails"]] == ["sha256:" + "a" * 64]
        call = ecr.calls[-1]
        assert call["target"] == "AmazonEC2ContainerRegistry_V20150921.DescribeImages"
        assert call["body"]["repositoryName"] == "team/app"
        assert call["body"]["filter"] == {"tagStatus": "TAGGED"}
        helm_only = cli.json("images", f"{ecr.host}/team/app", "--artifact-type",
                             "application/vnd.cncf.helm.config.v1+json")
        assert [d["imageTags"] for d in helm_only["imageDetails"]] == [["v1", "latest"]]
        table = cli("images", f"{ecr.host}/team/app").stdout
        assert "Helm chart" in table and "SBOM (SPDX)" in table
        # a registry login never signs: without AWS credentials the call is unsigned ...
        cli("login", ecr.host, "-u", "AKIDLOGIN", "-p", "secret")
        cli("images", f"{ecr.host}/team/app")
        assert ecr.calls[-1]["authorization"] == ""
        # ... and with AWS credentials in the environment, they sign it
        cli.env.update({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"})
        cli("images", f"{ecr.host}/team/app")
        assert ecr.calls[-1]["authorization"].startswith("AWS4-HMAC-SHA256 Credential="
                                                         "AKIDEXAMPLE/")
        missing = cli("images", f"{ecr.host}/missing", expect=1)
        assert "not found" in missing.stderr
    finally:
        ecr.stop()


def test_images_api_choice(tmp_path: Path, registry_url: str) -> None:
    cli = Cli(tmp_path / "dc")
    host = host_of(registry_url)
    write_files(tmp_path, {"a.txt": "a"})
    cli("push", f"{host}/apichoice/x:1", str(tmp_path / "a.txt"))
    assert cli.json("images", f"{host}/apichoice/x", "--api", "v2")["source"] == "v2"
    # without stored credentials an ECR API that wants them is skipped in auto mode
    assert cli.json("images", f"{host}/apichoice/x")["source"] in ("v2", "ecr")
    forced = cli("images", f"{host}/apichoice/x", "--api", "ecr", expect=None)
    if forced.exit_code == 1:
        assert "ECR API" in forced.stderr


def test_images_through_cargohold_ecr_api(make_registry: Any, tmp_path: Path) -> None:
    """With AWS credentials from the standard chain (here AWS_SHARED_CREDENTIALS_FILE),
    `images` asks Cargohold's ECR-compatible API (SigV4-signed by botocore) and agrees with
    what /v2 shows."""
    server = make_registry(anonymous=False)
    key, secret = server.admin_credentials
    cli = Cli(tmp_path / "dc", env={
        "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "admin-credentials")})
    cli("login", server.host, "-u", key, "--password-stdin", input=secret)
    write_files(tmp_path, {"a.txt": "a"})
    pushed = cli.json("push", f"{server.host}/ecr/app:v1", str(tmp_path / "a.txt"),
                      "--artifact-type", "application/vnd.example.thing")
    via_auto = cli.json("images", f"{server.host}/ecr/app", "--tag-status", "tagged")
    via_v2 = cli.json("images", f"{server.host}/ecr/app", "--tag-status", "tagged",
                      "--api", "v2")
    assert [d["imageDigest"] for d in via_v2["imageDetails"]] == [pushed["digest"]]
    assert via_auto["source"] == "ecr"
    [detail] = via_auto["imageDetails"]
    assert detail["imageDigest"] == pushed["digest"]
    assert detail["imageTags"] == ["v1"]
