"""The pull-through cache with real upstreams on loopback: the CNCF registry (Debian's
`docker-registry`, its access log counting upstream requests) and a second Cargohold with
authentication (Docker token flow), pulled through by skopeo, oras and plain HTTP.

A tiny aiohttp upstream stands in for a faulty network (cut or wrong blob bodies, 429/503).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from clienthelpers import (
    build_multiarch,
    require_oras,
    run_skopeo,
    write_multiarch_layout,
)
from conftest import RegistryProcess
from ecrhelpers import OCI_MANIFEST, Ecr, descriptor, ecr_client, image, start_ecr
from upstreamhelpers import PAYLOAD, FaultyUpstream, LoggedRegistry

from tests.clihelpers import Cli, missing, write_files

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60


class Cache:
    """A Cargohold (open access for pulls) and an ECR client of its administrator."""

    def __init__(self, server: RegistryProcess) -> None:
        self.server = server
        self.ecr = ecr_client(server.url, *server.admin_credentials)

    @property
    def url(self) -> str:
        return self.server.url

    def rule(self, prefix: str, upstream: str, **extra: Any) -> None:
        self.ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix,
                                                upstreamRegistryUrl=upstream, **extra)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=TIMEOUT, **kwargs)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
        result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                                 str(self.server.data_dir)], input=stdin, text=True,
                                capture_output=True, timeout=TIMEOUT, env=env, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def start_cache(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Cache]:
    server = RegistryProcess(tmp_path_factory.mktemp("cache") / "data", env=env)
    server.start()
    try:
        yield Cache(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    registry = LoggedRegistry(tmp_path_factory.mktemp("upstream")).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    """A second Cargohold that only answers authenticated requests."""
    yield from start_ecr(tmp_path_factory)


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyUpstream]:
    server = FaultyUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: LoggedRegistry, private: Ecr,
          faulty: FaultyUpstream) -> Iterator[Cache]:
    for cache in start_cache(tmp_path_factory, {}):
        cache.rule("cncf", upstream.url)
        cache.rule("faulty", faulty.url)
        arn = cache.cli("admin", "upstream-credentials", "put", "private", "--username",
                        private.key_id, "--password-stdin", stdin=private.secret + "\n")
        cache.rule("private", private.url, credentialArn=arn)
        cache.rule("anon-private", private.url)
        cache.rule("nowhere", "http://127.0.0.1:9")
        yield cache


def skopeo_push_multiarch(upstream_host: str, repo: str, workdir: Path) -> Any:
    image_set = build_multiarch(uuid.uuid4().hex)
    layout = workdir / f"layout-{uuid.uuid4().hex[:8]}"
    write_multiarch_layout(layout, image_set, "v1")
    run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{layout}:v1", f"docker://{upstream_host}/{repo}:v1")
    return image_set


def test_skopeo_pulls_a_multiarch_index_through_the_cache(
        cache: Cache, upstream: LoggedRegistry, tmp_path: Path) -> None:
    repo = f"library/app-{uuid.uuid4().hex[:8]}"
    pushed = skopeo_push_multiarch(upstream.host, repo, tmp_path)
    source = f"docker://127.0.0.1:{cache.server.port}/cncf/{repo}:v1"
    digestfile = tmp_path / "digest"
    run_skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
               "--digestfile", str(digestfile), source, f"oci:{tmp_path / 'out'}:v1")
    assert digestfile.read_text().strip() == pushed.index_digest
    for digest, data in pushed.all_blobs.items():
        stored = tmp_path / "out" / "blobs" / "sha256" / digest.split(":", 1)[1]
        assert stored.read_bytes() == data, f"{digest} differs after the pull through the cache"
    # The repository was created the normal way, with the index, its children and blobs.
    described = cache.ecr.describe_repositories(repositoryNames=[f"cncf/{repo}"])
    assert described["repositories"][0]["repositoryName"] == f"cncf/{repo}"
    images = cache.ecr.describe_images(repositoryName=f"cncf/{repo}")["imageDetails"]
    assert pushed.index_digest in {i["imageDigest"] for i in images}
    # A second pull is served locally: the upstream sees no request for the repository.
    seen = upstream.log().count(f"/v2/{repo}/")
    run_skopeo("copy", "--all", "--src-tls-verify=false", source,
               f"oci:{tmp_path / 'again'}:v1")
    assert upstream.log().count(f"/v2/{repo}/") == seen


def test_oras_pulls_an_artifact_through_the_cache(cache: Cache, upstream: LoggedRegistry,
                                                  tmp_path: Path) -> None:
    oras_client = require_oras()
    payload = tmp_path / "model.bin"
    payload.write_bytes(os.urandom(200_000))
    repo = f"models/m-{uuid.uuid4().hex[:8]}"
    pusher = oras_client.OrasClient(hostname=upstream.host, insecure=True)
    pusher.push(target=f"{upstream.host}/{repo}:1.0",
                files=[f"{payload}:application/vnd.example.model.v1"], disable_path_validation=True)
    puller = oras_client.OrasClient(hostname=f"127.0.0.1:{cache.server.port}", insecure=True)
    out = tmp_path / "pulled"
    files = puller.pull(target=f"127.0.0.1:{cache.server.port}/cncf/{repo}:1.0",
                        outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [payload.read_bytes()]


def test_authenticated_upstream_and_its_referrers(cache: Cache, private: Ecr) -> None:
    repo = f"team/svc-{uuid.uuid4().hex[:8]}"
    private.client.create_repository(repositoryName=repo)
    subject = private.push(repo, image(), "v1")
    signature = image(artifact_type="application/vnd.example.signature",
                      subject=descriptor(OCI_MANIFEST, subject.manifest))
    private.push(repo, signature)
    got = cache.get(f"/v2/private/{repo}/manifests/v1",
                    headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200, got.text
    assert got.content == subject.manifest
    layer = subject.blobs[1]
    blob = cache.get(f"/v2/private/{repo}/blobs/{hashlib_digest(layer)}")
    assert blob.status_code == 200 and blob.content == layer
    index = cache.get(f"/v2/private/{repo}/referrers/{subject.digest}").json()
    assert [m["digest"] for m in index["manifests"]] == [signature.digest]
    fetched = cache.get(f"/v2/private/{repo}/manifests/{signature.digest}")
    assert fetched.status_code == 200 and fetched.content == signature.manifest
    # The same upstream without the credential: a clear error naming it, nothing stored.
    refused = cache.get(f"/v2/anon-private/{repo}/manifests/v1")
    assert refused.status_code == 403, refused.text
    error = refused.json()["errors"][0]
    assert error["code"] == "DENIED" and private.url in error["message"]
    assert cache.get(f"/v2/anon-private/{repo}/tags/list").status_code == 404


def test_basic_auth_upstream(cache: Cache, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The CNCF registry with htpasswd challenges with Basic: the rule's credential answers."""
    guarded = LoggedRegistry(tmp_path_factory.mktemp("basic"), {"puller": "pa55word"}).start()
    try:
        session = requests.Session()
        session.auth = ("puller", "pa55word")
        repo = f"library/basic-{uuid.uuid4().hex[:6]}"
        artifact = push_image(guarded, repo, "v1", session)
        arn = cache.cli("admin", "upstream-credentials", "put", "basic", "--username",
                        "puller", "--password-stdin", stdin="pa55word\n")
        cache.rule("basic", guarded.url, credentialArn=arn)
        got = cache.get(f"/v2/basic/{repo}/manifests/v1")
        assert got.status_code == 200 and got.content == artifact.manifest, got.text
        for blob in artifact.blobs:
            assert cache.get(f"/v2/basic/{repo}/blobs/{hashlib_digest(blob)}").content == blob
    finally:
        guarded.stop()


def hashlib_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_upstream_errors_name_the_upstream(cache: Cache, upstream: LoggedRegistry,
                                           faulty: FaultyUpstream) -> None:
    missing = cache.get(f"/v2/cncf/library/absent-{uuid.uuid4().hex[:6]}/manifests/v1")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert upstream.url in missing.json()["errors"][0]["message"]
    down = cache.get("/v2/nowhere/library/x/manifests/v1")
    assert down.status_code == 502 and "127.0.0.1:9" in down.json()["errors"][0]["message"]
    limited = cache.get(f"/v2/faulty/status-429/x/blobs/{faulty.digest}")
    assert limited.status_code == 429 and limited.headers.get("Retry-After") == "7"
    assert faulty.url in limited.json()["errors"][0]["message"]
    failing = cache.get("/v2/faulty/status-503/x/manifests/v1")
    assert failing.status_code == 502 and "503" in failing.json()["errors"][0]["message"]
    for path in ("/v2/cncf/library/absent/manifests/v1", "/v2/nowhere/library/x/manifests/v1"):
        assert cache.get(path.rsplit("/manifests", 1)[0] + "/tags/list").status_code == 404


@pytest.mark.parametrize("mode", ["cut", "wrong"])
def test_a_failed_upstream_transfer_stores_nothing(cache: Cache, faulty: FaultyUpstream,
                                                   mode: str) -> None:
    path = f"/v2/faulty/{mode}/blob/blobs/{faulty.digest}"
    before = faulty.gets
    try:
        response = cache.get(path)
        received = response.content
    except requests.exceptions.RequestException:
        received = b""
    assert received != PAYLOAD
    assert hashlib_digest(received) != faulty.digest
    blob_file = (cache.server.data_dir / "blobs" / "blobs" / "sha256" / faulty.digest[7:9]
                 / faulty.digest[7:])
    assert not blob_file.exists()
    assert list((cache.server.data_dir / "blobs" / "uploads").iterdir()) == []
    # Nothing cached: the next pull asks the upstream again.
    with pytest.raises(requests.exceptions.RequestException):
        again = cache.get(path)
        if again.content != PAYLOAD:
            raise requests.exceptions.ContentDecodingError("incomplete again")
    assert faulty.gets == before + 2


def test_pushes_into_cache_repositories_are_refused_unless_the_rule_allows(
        cache: Cache) -> None:
    repo = f"cncf/pushed-{uuid.uuid4().hex[:8]}"
    refused = requests.post(f"{cache.url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "DENIED"
    assert "pull-through cache" in refused.json()["errors"][0]["message"]
    put = requests.put(f"{cache.url}/v2/{repo}/manifests/v1", data=b"{}", timeout=TIMEOUT,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 403
    assert cache.get(f"/v2/{repo}/tags/list").status_code == 404
    with pytest.raises(ClientError) as exc:
        cache.ecr.initiate_layer_upload(repositoryName=repo)
    assert "pull-through cache" in str(exc.value)
    with pytest.raises(ClientError):
        cache.ecr.put_image(repositoryName=repo, imageManifest=image().manifest.decode(),
                            imageTag="v1")
    assert cache.get(f"/v2/{repo}/tags/list").status_code == 404
    cache.cli("admin", "pull-through-rules", "allow-push", "faulty")
    deadline = time.monotonic() + 30
    accepted = requests.post(f"{cache.url}/v2/faulty/pushed/blobs/uploads/", timeout=TIMEOUT)
    while accepted.status_code != 202 and time.monotonic() < deadline:
        time.sleep(0.5)  # rules are re-read every 2 s
        accepted = requests.post(f"{cache.url}/v2/faulty/pushed/blobs/uploads/",
                                 timeout=TIMEOUT)
    assert accepted.status_code == 202, accepted.text
    cache.cli("admin", "pull-through-rules", "allow-push", "faulty", "--refuse")


# -- tags: the TTL, stale if error, digests never re-checked ----------------------------------

@pytest.fixture
def own_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    registry = LoggedRegistry(tmp_path_factory.mktemp("own-upstream")).start()
    yield registry
    registry.stop()


@pytest.fixture
def short_ttl(tmp_path_factory: pytest.TempPathFactory,
              own_upstream: LoggedRegistry) -> Iterator[Cache]:
    for cache in start_cache(tmp_path_factory, {"CARGOHOLD_UPSTREAMS__PTC_TAG_TTL": "1"}):
        cache.rule("mirror", own_upstream.url)
        yield cache


def push_image(registry: LoggedRegistry, repo: str, tag: str,
               session: requests.Session | None = None) -> Any:
    http = session or requests.Session()
    artifact = image()
    for blob in artifact.blobs:
        upload_blob(registry, repo, blob, http)
    response = http.put(f"{registry.url}/v2/{repo}/manifests/{tag}", data=artifact.manifest,
                            headers={"Content-Type": OCI_MANIFEST}, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    return artifact


def upload_blob(registry: LoggedRegistry, repo: str, data: bytes,
                http: requests.Session | None = None) -> None:
    """POST then PUT ?digest= (the CNCF registry has no single-request upload)."""
    http = http or requests.Session()
    started = http.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    separator = "&" if "?" in location else "?"
    done = http.put(f"{location}{separator}digest={hashlib_digest(data)}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    assert done.status_code == 201, done.text


def wait_past_ttl() -> None:
    time.sleep(1.5)  # the cache's ptc_tag_ttl is 1 s


def test_a_moved_tag_is_refreshed_after_the_ttl(short_ttl: Cache,
                                                own_upstream: LoggedRegistry) -> None:
    first = push_image(own_upstream, "library/moving", "latest")
    path = "/v2/mirror/library/moving/manifests/latest"
    assert short_ttl.get(path, headers={"Accept": OCI_MANIFEST}).content == first.manifest
    second = push_image(own_upstream, "library/moving", "latest")
    wait_past_ttl()
    assert short_ttl.get(path, headers={"Accept": OCI_MANIFEST}).content == second.manifest
    # The tag was re-checked with a HEAD; a digest reference never is.
    assert own_upstream.count("HEAD", "/v2/library/moving/manifests/latest") >= 1
    by_digest = f"/v2/mirror/library/moving/manifests/{first.digest}"
    assert short_ttl.get(by_digest).content == first.manifest
    asked = own_upstream.count("GET", f"/v2/library/moving/manifests/{first.digest}")
    wait_past_ttl()
    assert short_ttl.get(by_digest).content == first.manifest
    assert own_upstream.count("GET", f"/v2/library/moving/manifests/{first.digest}") == asked
    assert own_upstream.count("HEAD", f"/v2/library/moving/manifests/{first.digest}") == 0


def test_cached_content_is_served_while_the_upstream_is_down(
        short_ttl: Cache, own_upstream: LoggedRegistry) -> None:
    artifact = push_image(own_upstream, "library/steady", "v1")
    manifest = "/v2/mirror/library/steady/manifests/v1"
    assert short_ttl.get(manifest).content == artifact.manifest
    for blob in artifact.blobs:
        assert short_ttl.get(f"/v2/mirror/library/steady/blobs/{hashlib_digest(blob)}"
                             ).content == blob
    own_upstream.stop()
    wait_past_ttl()
    stale = short_ttl.get(manifest)
    assert stale.status_code == 200 and stale.content == artifact.manifest
    for blob in artifact.blobs:
        assert short_ttl.get(f"/v2/mirror/library/steady/blobs/{hashlib_digest(blob)}"
                             ).content == blob
    uncached = short_ttl.get("/v2/mirror/library/steady/manifests/v2")
    assert uncached.status_code == 502
    assert own_upstream.url in uncached.json()["errors"][0]["message"]
    assert json.loads(stale.content)["layers"]


def test_validate_reaches_the_upstream_with_the_rules_credential(cache: Cache,
                                                                 private: Ecr) -> None:
    assert cache.ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="cncf")["isValid"]
    assert cache.ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="private")["isValid"]
    unreachable = cache.ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="nowhere")
    assert unreachable["isValid"] is False and "127.0.0.1:9" in unreachable["failure"]


def test_helm_pulls_a_chart_through_the_cache(cache: Cache, upstream: LoggedRegistry,
                                              cli: Cli, tmp_path: Path) -> None:
    """A chart pushed upstream (Helm's format, by `cargohold chart push`), pulled by Helm's
    own registry code (helm-python-sdk) straight and through the cache: the same archive."""
    try:
        import helm_python as sdk
    except ImportError as exc:
        missing("helm-python-sdk", f"pip install helm-python-sdk: {exc}")
        raise
    chart = tmp_path / "webapp"
    write_files(chart, {"Chart.yaml": "apiVersion: v2\nname: webapp\nversion: 0.3.1\n",
                        "values.yaml": "replicaCount: 2\n",
                        "templates/deployment.yaml": "kind: Deployment\n"})
    namespace = f"charts/{uuid.uuid4().hex[:8]}"
    cli("chart", "push", str(chart), f"{upstream.host}/{namespace}")
    archives = []
    for host in (upstream.host, f"127.0.0.1:{cache.server.port}/cncf"):
        destination = tmp_path / f"pulled-{len(archives)}"
        destination.mkdir()
        sdk.pull(f"oci://{host}/{namespace}/webapp", version="0.3.1",
                 destination=str(destination), plain_http=True)
        [archive] = list(destination.iterdir())
        archives.append(archive.read_bytes())
    assert archives[0] == archives[1]
    assert cache.get(f"/v2/cncf/{namespace}/webapp/tags/list").json()["tags"] == ["0.3.1"]


def test_creation_templates_for_the_cache_configure_cache_repositories(
        cache: Cache, upstream: LoggedRegistry) -> None:
    cache.ecr.create_repository_creation_template(
        prefix="cncf/templated", appliedFor=["PULL_THROUGH_CACHE"],
        imageTagMutability="IMMUTABLE", resourceTags=[{"Key": "source", "Value": "cache"}])
    cache.ecr.create_repository_creation_template(
        prefix="cncf/pushed", appliedFor=["CREATE_ON_PUSH"],
        resourceTags=[{"Key": "source", "Value": "push"}])
    for repo in ("templated/app", "pushed/app"):
        push_image(upstream, repo, "v1")
        response = cache.get(f"/v2/cncf/{repo}/manifests/v1",
                             headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200, response.text
    described = {r["repositoryName"]: r for r in cache.ecr.describe_repositories(
        repositoryNames=["cncf/templated/app", "cncf/pushed/app"])["repositories"]}
    assert described["cncf/templated/app"]["imageTagMutability"] == "IMMUTABLE"
    assert described["cncf/pushed/app"]["imageTagMutability"] == "MUTABLE"
    tags = cache.ecr.list_tags_for_resource(
        resourceArn=described["cncf/templated/app"]["repositoryArn"])["tags"]
    assert tags == [{"Key": "source", "Value": "cache"}]
    # A CREATE_ON_PUSH template is not for repositories the cache creates.
    assert cache.ecr.list_tags_for_resource(
        resourceArn=described["cncf/pushed/app"]["repositoryArn"])["tags"] == []
