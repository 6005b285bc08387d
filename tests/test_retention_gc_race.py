"""Pushes racing garbage collection at grace 0: a manifest PUT either wins (and its blobs stay)
or gets MANIFEST_BLOB_UNKNOWN and the client pushes the blobs again. No 201 is ever followed
by a missing blob."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cargohold.config import load_settings
from cargohold.services.retention.gc import GarbageCollector
from cargohold.services.storage import Storage
from tests.dbfixtures import database_url, postgres_available
from tests.ocihelpers import (
    OCI_LAYER_GZIP,
    assert_blob,
    build_image,
    descriptor,
    encode,
    error_codes,
    push_blob,
    put_manifest,
    random_bytes,
)
from tests.retentionhelpers import blob_files, run_gc

SHARED_LAYER = random_bytes(4096)
PUSHERS, ROUNDS = 3, 20


def _push_with_retries(base: str, repo: str, tag: str, stats: dict[str, int]) -> dict[str, bytes]:
    """Push an image whose first layer is shared by every pusher, the way clients do: skip
    blobs the registry says it has, and push again on MANIFEST_BLOB_UNKNOWN."""
    image = build_image(base, repo, layers=1, push_blobs=False)
    blobs = dict(image.blobs)
    shared_digest = descriptor(OCI_LAYER_GZIP, SHARED_LAYER)["digest"]
    blobs[shared_digest] = SHARED_LAYER
    doc = image.json
    doc["layers"].insert(0, descriptor(OCI_LAYER_GZIP, SHARED_LAYER))
    body = encode(doc)
    for _ in range(100):
        for digest, data in blobs.items():
            head = requests.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=30)
            if head.status_code != 200:
                push_blob(base, repo, data)
        resp = put_manifest(base, repo, tag, body, image.media_type)
        if resp.status_code == 201:
            stats["created"] += 1
            return blobs
        assert resp.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in error_codes(resp), (
            resp.status_code, resp.text)
        stats["retried"] += 1
    raise AssertionError("a push never won against garbage collection")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql" and not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    with database_url(request.param, tmp_path) as url:
        yield url


def test_racing_pushers_against_gc_at_grace_zero(make_registry, database: str) -> None:
    env = {"CARGOHOLD_GC_INTERVAL": "0", "CARGOHOLD_DATABASE_URL": database}
    server = make_registry(env=env)
    base = server.url
    stats = {"created": 0, "retried": 0}
    pushed: dict[tuple[str, str], dict[str, bytes]] = {}
    errors: list[BaseException] = []

    def pusher(index: int) -> None:
        repo = f"race/p{index}"
        try:
            for round_ in range(ROUNDS):
                tag = f"r{round_}"
                pushed[(repo, tag)] = _push_with_retries(base, repo, tag, stats)
                if round_ % 2:
                    # Delete it again: its blobs become garbage while others push them.
                    digest = requests.head(f"{base}/v2/{repo}/manifests/{tag}", headers={
                        "Accept": "application/vnd.oci.image.manifest.v1+json"},
                        timeout=30).headers["Docker-Content-Digest"]
                    assert requests.delete(f"{base}/v2/{repo}/manifests/{digest}",
                                           timeout=30).status_code == 202
                    del pushed[(repo, tag)]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(PUSHERS)]
    for thread in threads:
        thread.start()
    # The collector the CLI runs, back to back in this process, as often as it can.
    storage = Storage.from_settings(load_settings(data_dir=server.data_dir,
                                                  database_url=database))
    collector = GarbageCollector(storage)
    runs = 0
    try:
        while any(thread.is_alive() for thread in threads):
            if asyncio.run(collector.run(0)).ran:
                runs += 1
            # Back to back, a collection at grace 0 would unlink every fresh upload before
            # its manifest arrives: leave pushes a chance to win too.
            time.sleep(random.uniform(0, 0.05))
    finally:
        storage.close()
    for thread in threads:
        thread.join()
    assert not errors, errors
    run_gc(server.data_dir, "--grace", "0", env=env)
    assert runs >= 1 and stats["created"] == PUSHERS * ROUNDS
    present = blob_files(server.data_dir)
    for (repo, tag), blobs in pushed.items():
        for digest, data in blobs.items():
            assert digest in present, (repo, tag, digest)
            assert_blob(base, repo, digest, data)
    # What a deleted image alone used is gone: bytes really leave the store.
    kept = {digest for blobs in pushed.values() for digest in blobs}
    assert set(present) == kept, (len(present), len(kept))
