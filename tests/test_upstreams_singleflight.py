"""Single flight of the pull-through cache across worker processes and nodes: 16 concurrent
pulls of one uncached 64 MiB blob through `cargohold serve --workers 2`, or through two nodes
sharing PostgreSQL and S3, cause exactly one upstream fetch, counted in the upstream's (the CNCF
registry's) access log. With SQLite the workers meet on a per-digest `flock`, with PostgreSQL
on an advisory lock."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy
from conftest import RegistryProcess
from dbfixtures import database_url, postgres_available
from ecrhelpers import ecr_client
from multinode import node_pair
from prometheus_client.mmap_dict import MmapedDict
from seaweed import SeaweedS3
from test_upstreams_cache import hashlib_digest, upload_blob
from test_upstreams_replication import eventually
from upstreamhelpers import LoggedRegistry

from cargohold.storage.exclusive import lock_key

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 120
PULLS = 16


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    registry = LoggedRegistry(tmp_path_factory.mktemp("upstream")).start()
    yield registry
    registry.stop()


@pytest.fixture(params=["sqlite", "postgresql", "sqlite+s3"])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path,
                upstream: LoggedRegistry) -> Iterator[RegistryProcess]:
    """Metadata in SQLite or PostgreSQL; blobs in files, or in S3 (SeaweedFS), where the
    upload is written through the store's writer rather than on the hashing thread."""
    database, _, blobs = request.param.partition("+")
    if database == "postgresql" and not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    env: dict[str, str] = {}
    if blobs == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed_s3")
        env = seaweed.blob_store_env(seaweed.new_bucket())
    with database_url(database, tmp_path) as url:
        server = RegistryProcess(tmp_path / "data", extra_args=["--workers", "2"],
                                 env={"CARGOHOLD_DATABASE_URL": url, **env})
        server.start()
        try:
            ecr_client(server.url, *server.admin_credentials).create_pull_through_cache_rule(
                ecrRepositoryPrefix="cncf", upstreamRegistryUrl=upstream.url)
            yield server
        finally:
            server.stop()


def blob_gets_by_worker(server: RegistryProcess) -> dict[str, float]:
    """Blob GETs answered 200, per worker process (from the workers' metric files)."""
    counts: dict[str, float] = {}
    for path in (server.data_dir / "run" / "metrics").glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            name, _sample, labels, _help = json.loads(key)
            if (name == "cargohold_http_requests" and labels.get("method") == "GET"
                    and labels.get("route") == "/v2/{name}/blobs/{digest}"
                    and labels.get("status") == "200" and value):
                counts[path.stem] = counts.get(path.stem, 0) + value
    return counts


def test_concurrent_pulls_of_one_blob_fetch_it_once_across_workers(
        two_workers: RegistryProcess, upstream: LoggedRegistry) -> None:
    def pull(_: int) -> str:
        hasher = hashlib.sha256()
        with requests.get(f"{two_workers.url}/v2/cncf/{repo}/blobs/{digest}", stream=True,
                          timeout=TIMEOUT) as response:
            assert response.status_code == 200, response.text
            for chunk in response.iter_content(1 << 20):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    # The kernel hands each connection to either worker: try a new blob (rarely) until both
    # workers served some of the pulls, so that the workers really had to agree.
    for _attempt in range(5):
        data = os.urandom(64 * 1024 * 1024)
        digest = hashlib_digest(data)
        repo = f"big/b-{uuid.uuid4().hex[:8]}"
        upload_blob(upstream, repo, data)
        del data
        before = blob_gets_by_worker(two_workers)
        with ThreadPoolExecutor(PULLS) as pool:
            assert list(pool.map(pull, range(PULLS))) == [digest] * PULLS
        assert upstream.count("GET", f"/v2/{repo}/blobs/{digest}") == 1
        after = blob_gets_by_worker(two_workers)
        if sum(after[w] > before.get(w, 0) for w in after) == 2:
            break
    else:
        pytest.fail("every attempt's pulls went to one worker")
    # Every lock was released: with SQLite, its file is gone with the release.
    database = two_workers.env["CARGOHOLD_DATABASE_URL"]
    if database.startswith("sqlite:///"):
        locks = Path(database.removeprefix("sqlite:///") + ".fetch-locks")
        assert locks.is_dir() and list(locks.iterdir()) == []
    else:
        key = lock_key(f"upstream-fetch:{digest}")
        engine = sqlalchemy.create_engine(database)
        with engine.connect() as conn:
            held = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                "classid = :high AND objid = :low"),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalar_one()
        engine.dispose()
        assert held == 0


def test_concurrent_pulls_on_two_nodes_fetch_once(tmp_path: Path, seaweed_s3: SeaweedS3,
                                                   upstream: LoggedRegistry) -> None:
    """Half the pulls go to each node directly (no proxy choosing), so both must agree."""
    with node_pair(tmp_path / "pair", seaweed_s3) as pair:
        ecr_client(pair.a.url, *pair.a.admin_credentials).create_pull_through_cache_rule(
            ecrRepositoryPrefix="cncf", upstreamRegistryUrl=upstream.url)
        data = os.urandom(64 * 1024 * 1024)
        digest = hashlib_digest(data)
        repo = f"big/n-{uuid.uuid4().hex[:8]}"
        upload_blob(upstream, repo, data)
        del data
        path = f"/v2/cncf/{repo}/blobs/{digest}"
        # Node B reads rules every 2 s: wait until it knows this one (a HEAD, not a GET).
        assert eventually(lambda: requests.head(pair.b.url + path, timeout=TIMEOUT)
                          .status_code == 200, 30)

        def pull(index: int) -> str:
            node = (pair.a, pair.b)[index % 2]
            hasher = hashlib.sha256()
            with requests.get(node.url + path, stream=True, timeout=TIMEOUT) as response:
                assert response.status_code == 200, response.text
                for chunk in response.iter_content(1 << 20):
                    hasher.update(chunk)
            return "sha256:" + hasher.hexdigest()

        with ThreadPoolExecutor(PULLS) as pool:
            assert list(pool.map(pull, range(PULLS))) == [digest] * PULLS
        assert upstream.count("GET", f"/v2/{repo}/blobs/{digest}") == 1
