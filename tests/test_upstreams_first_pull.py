"""The first pull of a blob through the cache on a filesystem store (`blobreceive`,
`http.growing`): the upstream body is received on a thread into the upload file and the
clients are served from that file as it fills. Byte-identical large blobs, Range, shared
transfers, redirects (the Authorization header stays with its origin), failed transfers that
cut the client's response short and store nothing, and clients that leave midway without
stopping the store or leaking threads and descriptors."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from processhelpers import eventually, threads_and_fds
from test_upstreams_cache import Cache, hashlib_digest, start_cache, upload_blob
from upstreamhelpers import BIG_SIZE, FaultyUpstream, LoggedRegistry, big_digest, big_payload

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    registry = LoggedRegistry(tmp_path_factory.mktemp("upstream")).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyUpstream]:
    server = FaultyUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: LoggedRegistry,
          faulty: FaultyUpstream) -> Iterator[Cache]:
    for cache in start_cache(tmp_path_factory, {}):
        cache.rule("cncf", upstream.url)
        cache.rule("faulty", faulty.url)
        arn = cache.cli("admin", "upstream-credentials", "put", "faulty-basic", "--username",
                        "someone", "--password-stdin", stdin="secret\n")
        cache.rule("basic", faulty.url, credentialArn=arn)
        yield cache


def repo_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stored(cache: Cache, digest: str) -> bool:
    hexpart = digest.split(":", 1)[1]
    return (cache.server.data_dir / "blobs" / "blobs" / "sha256" / hexpart[:2]
            / hexpart).exists()


def uploads_left(cache: Cache) -> list[Path]:
    return list((cache.server.data_dir / "blobs" / "uploads").iterdir())


def pull(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as response:
        body = b"".join(response.iter_content(1 << 20))
        return response.status_code, body, dict(response.headers)


def test_a_large_blob_arrives_byte_identical_and_is_stored(cache: Cache,
                                                           upstream: LoggedRegistry) -> None:
    data = os.urandom(40 << 20)
    digest = hashlib_digest(data)
    repo = repo_name("large")
    upload_blob(upstream, repo, data)
    status, body, headers = pull(f"{cache.url}/v2/cncf/{repo}/blobs/{digest}")
    assert status == 200 and headers["Docker-Content-Digest"] == digest
    assert len(body) == len(data) and body == data
    assert eventually(lambda: stored(cache, digest))
    again = cache.get(f"/v2/cncf/{repo}/blobs/{digest}")
    assert again.status_code == 200 and again.content == data
    assert upstream.count("GET", f"/v2/{repo}/blobs/{digest}") == 1
    assert uploads_left(cache) == []


def test_a_range_on_the_first_pull_is_served_from_the_filling_file(
        cache: Cache, faulty: FaultyUpstream) -> None:
    repo = repo_name("range")
    payload, digest = big_payload(repo), big_digest(repo)
    before = faulty.gets
    status, body, headers = pull(f"{cache.url}/v2/faulty/slow/{repo}/blobs/{digest}",
                                 Range="bytes=1000-2999999")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-2999999/{BIG_SIZE}"
    assert body == payload[1000:3000000]
    # The whole blob was fetched and stored all the same.
    assert eventually(lambda: stored(cache, digest))
    assert cache.get(f"/v2/faulty/slow/{repo}/blobs/{digest}").content == payload
    assert faulty.gets == before + 1


def test_concurrent_first_pulls_share_one_transfer(cache: Cache,
                                                   faulty: FaultyUpstream) -> None:
    repo = repo_name("shared")
    payload, digest = big_payload(repo), big_digest(repo)
    before = faulty.gets
    url = f"{cache.url}/v2/faulty/slow/{repo}/blobs/{digest}"

    def one(_: int) -> str:
        status, body, _headers = pull(url)
        assert status == 200
        return hashlib_digest(body)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [digest] * 8
    assert faulty.gets == before + 1
    assert eventually(lambda: stored(cache, digest))
    assert requests.get(url, timeout=TIMEOUT).content == payload


def test_redirects_are_followed_and_the_credential_stays_with_its_origin(
        cache: Cache, faulty: FaultyUpstream) -> None:
    repo = repo_name("redirect")
    status, body, _ = pull(f"{cache.url}/v2/faulty/redirect/{repo}/blobs/{big_digest(repo)}")
    assert status == 200 and body == big_payload(repo)
    # Basic credentials answer the challenge; the redirect to another origin (a presigned
    # object-storage URL, say) does not carry them.
    repo = repo_name("auth")
    seen = len(faulty.redirected_auth)
    status, body, _ = pull(f"{cache.url}/v2/basic/auth-redirect/{repo}/blobs/"
                           f"{big_digest(repo)}")
    assert status == 200 and body == big_payload(repo)
    assert faulty.redirected_auth[seen:] == [None]


@pytest.mark.parametrize("mode", ["big-cut", "big-wrong"])
def test_a_failed_transfer_cuts_the_response_short_and_stores_nothing(
        cache: Cache, faulty: FaultyUpstream, mode: str) -> None:
    repo = repo_name(mode)
    payload, digest = big_payload(repo), big_digest(repo)
    received = b""
    with pytest.raises(requests.exceptions.RequestException), requests.get(
            f"{cache.url}/v2/faulty/{mode}/{repo}/blobs/{digest}", stream=True,
            timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == BIG_SIZE
        for chunk in response.iter_content(1 << 16):
            received += chunk
    # The bytes that came were the blob's, streamed before the end; the end never came.
    assert 0 < len(received) < BIG_SIZE
    assert received == payload[:len(received)]
    assert not stored(cache, digest)
    assert eventually(lambda: uploads_left(cache) == [])


EXECUTOR_SLACK = 4
POOL_FD_SLACK = 3


def server_threads_and_fds(cache: Cache) -> tuple[int, int]:
    assert cache.server.proc is not None
    return threads_and_fds(cache.server.proc.pid)


def test_a_client_that_leaves_midway_does_not_stop_the_store_nor_leak(
        cache: Cache, faulty: FaultyUpstream) -> None:
    def leave_midway() -> str:
        repo = repo_name("leaver")
        digest = big_digest(repo)
        with requests.get(f"{cache.url}/v2/faulty/slow/{repo}/blobs/{digest}", stream=True,
                          timeout=TIMEOUT) as response:
            assert response.status_code == 200
            assert len(response.raw.read(1 << 20)) == 1 << 20
        # The connection is closed now, long before the slow upstream is done.
        assert eventually(lambda: stored(cache, digest))
        assert cache.get(f"/v2/faulty/slow/{repo}/blobs/{digest}").content == big_payload(repo)
        return digest

    leave_midway()  # the first sets up what stays (threads of the executors, connections)
    assert eventually(lambda: uploads_left(cache) == [])
    time.sleep(1)
    baseline = server_threads_and_fds(cache)
    before = faulty.gets
    for _ in range(6):
        leave_midway()
    assert faulty.gets == before + 6
    assert eventually(lambda: uploads_left(cache) == [])
    # Transfer and sendfile threads end, and their descriptors are closed. (The executors and
    # the connection pool may still grow, lazily, under a busy machine's timing: a few threads,
    # one more SQLite connection with its WAL and shared-memory files. A leak per transfer
    # would pass these bounds after six rounds.)
    assert eventually(lambda: server_threads_and_fds(cache)[0] <= baseline[0] + EXECUTOR_SLACK
                      and server_threads_and_fds(cache)[1] <= baseline[1] + POOL_FD_SLACK), \
        (baseline, server_threads_and_fds(cache))
