"""Only one collector at a time, across worker processes and nodes (SQLite lease rows,
PostgreSQL advisory locks)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from cargohold.storage.database import Database
from cargohold.storage.maintenance import MaintenanceStore
from cargohold.storage.metadata import MetadataStore, now_us
from tests.dbfixtures import database_url, postgres_available
from tests.ocihelpers import assert_blob, build_image, push
from tests.retentionhelpers import store_files


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql" and not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    with database_url(request.param, tmp_path) as url:
        yield url


def test_job_lock_has_one_holder(database: str) -> None:
    # Two Database objects: two processes (or nodes) as far as the lock can tell.
    first, second = Database(database), Database(database)
    try:
        first.migrate()
        one, two = MaintenanceStore(first), MaintenanceStore(second)
        lease = one.try_acquire("gc")
        assert lease is not None
        assert two.try_acquire("gc") is None
        assert two.try_acquire("lifecycle") is not None  # another job, another lock
        lease.release()
        again = two.try_acquire("gc")
        assert again is not None
        again.release()
    finally:
        first.dispose()
        second.dispose()


def test_gc_runs_one_at_a_time_across_nodes_and_workers(make_registry, database: str,
                                                       tmp_path: Path) -> None:
    shared_blobs = tmp_path / "shared-blobs"
    env = {"CARGOHOLD_DATABASE_URL": database, "CARGOHOLD_BLOB_STORE__PATH": str(shared_blobs),
           "CARGOHOLD_GC_INTERVAL": "1s", "CARGOHOLD_GC_GRACE": "5s"}
    # Two nodes of two workers each, on one database and one blob store.
    nodes = [make_registry(["--workers", "2"], env=env)]
    if database.startswith("postgresql"):
        nodes.append(make_registry(["--workers", "2"], env=env))
    base, repo = nodes[0].url, "locks/app"
    kept = push(base, repo, build_image(base, repo, layers=2), "kept")
    doomed = push(nodes[-1].url, repo, build_image(nodes[-1].url, repo, layers=2), "doomed")
    assert requests.delete(f"{base}/v2/{repo}/manifests/{doomed.digest}",
                           timeout=30).status_code == 202

    # Hold the collectors' lock from here: no worker of any node may run meanwhile.
    db = Database(database)
    try:
        store = MaintenanceStore(db)
        deadline = time.monotonic() + 30
        while (lease := store.try_acquire("gc")) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        held_from = now_us()
        time.sleep(3)
        held_to = now_us()
        lease.release()
        deadline = time.monotonic() + 30
        while set(doomed.blobs) & set(store_files(shared_blobs)):
            assert time.monotonic() < deadline, "the in-server collector never ran"
            time.sleep(0.2)
        time.sleep(2.5)
        runs = sorted(store.runs("gc", limit=1000), key=lambda run: run["started_at"])
    finally:
        db.dispose()
    assert len(runs) >= 2
    for run in runs:
        assert run["finished_at"] < held_from or run["started_at"] > held_to
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    assert sum(run["report"]["blobs_deleted"] for run in runs) == len(
        set(doomed.blobs) - set(kept.blobs))
    for node in nodes:
        for digest, data in kept.blobs.items():
            assert_blob(node.url, repo, digest, data)


def test_mount_takes_the_links_in_the_order_collection_does(tmp_path: Path) -> None:
    """A mount into a repository that already links the blob, racing a collection batch that
    holds the target's link (the lower key) and will next lock the source's: the mount must
    wait without holding the source's link, or the two deadlock (PostgreSQL aborts one)."""
    if not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")
    digest = "sha256:" + "ab" * 32
    with database_url("postgresql", tmp_path) as url:
        db, collector = Database(url), sa.create_engine(url)
        try:
            db.migrate()
            store = MetadataStore(db)
            store.link_blob("mounts/target", digest, 3, create=True)  # the lower id
            store.link_blob("mounts/source", digest, 3, create=True)
            with collector.connect() as gc:
                ids = dict(gc.execute(sa.text("SELECT name, id FROM repositories")).all())
                assert ids["mounts/target"] < ids["mounts/source"]
                lock = sa.text("SELECT 1 FROM repository_blobs WHERE repository_id = :id"
                               " AND digest = :digest FOR UPDATE NOWAIT")
                gc.execute(lock, {"id": ids["mounts/target"], "digest": digest})
                with ThreadPoolExecutor(1) as pool:
                    mounted = pool.submit(store.mount_blob, "mounts/target", "mounts/source",
                                          digest, create=True)
                    deadline = time.monotonic() + 10
                    while not gc.execute(sa.text(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                        assert time.monotonic() < deadline, "the mount never waited"
                        time.sleep(0.02)
                    # The batch's next lock: free, because the waiting mount holds nothing.
                    gc.execute(lock, {"id": ids["mounts/source"], "digest": digest})
                    gc.commit()
                    assert mounted.result(timeout=10) is True
        finally:
            db.dispose()
            collector.dispose()
