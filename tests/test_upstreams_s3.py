"""The pull-through cache with the S3 blob store (SeaweedFS): a first pull streams the blob
straight to its content address while the client receives it, and a cut or corrupt upstream
transfer leaves nothing in the bucket (no object, no open multipart upload)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import RegistryProcess
from ecrhelpers import ecr_client
from seaweed import SeaweedS3
from upstreamhelpers import PAYLOAD, FaultyUpstream

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60


@pytest.fixture
def faulty() -> Iterator[FaultyUpstream]:
    server = FaultyUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def s3_cache(tmp_path: Path, seaweed_s3: SeaweedS3,
             faulty: FaultyUpstream) -> Iterator[tuple[RegistryProcess, str]]:
    bucket = seaweed_s3.new_bucket()
    server = RegistryProcess(tmp_path / "data", env=seaweed_s3.blob_store_env(bucket))
    server.start()
    try:
        ecr_client(server.url, *server.admin_credentials).create_pull_through_cache_rule(
            ecrRepositoryPrefix="faulty", upstreamRegistryUrl=faulty.url)
        yield server, bucket
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["cut", "wrong"])
def test_a_failed_transfer_leaves_nothing_in_the_bucket(
        s3_cache: tuple[RegistryProcess, str], seaweed_s3: SeaweedS3,
        faulty: FaultyUpstream, mode: str) -> None:
    server, bucket = s3_cache

    def pull() -> bytes:
        try:
            return requests.get(f"{server.url}/v2/faulty/{mode}/blob/blobs/{faulty.digest}",
                                timeout=TIMEOUT).content
        except requests.exceptions.RequestException:
            return b""

    received = pull()
    assert received != PAYLOAD
    assert "sha256:" + hashlib.sha256(received).hexdigest() != faulty.digest
    s3 = seaweed_s3.client()
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in objects if "/blobs/" in "/" + o["Key"]] == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert faulty.gets == 1
    # Nothing cached: the next pull asks the upstream again.
    assert pull() != PAYLOAD
    assert faulty.gets == 2
