"""Manifest reads on the event loop's SQLite connection are remembered only while nothing has
committed (storage/loop_cache.py): a tag moved through another connection, or by another
process, is seen by the very next read."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from cargohold.storage.database import Database
from cargohold.storage.loop_cache import VersionedCache
from cargohold.storage.metadata import MetadataStore
from cargohold.storage.schema import manifests, repositories, tags

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    db = Database(url)
    db.migrate()
    with db.write() as conn:
        repo = conn.execute(insert(repositories).values(
            name="team/app", created_at=1).returning(repositories.c.id)).scalar_one()
        ids = {digest: conn.execute(insert(manifests).values(
            repository_id=repo, digest=digest, media_type="application/json", size=2,
            content=digest.encode(), pushed_at=1).returning(manifests.c.id)).scalar_one()
            for digest in (A, B)}
        conn.execute(insert(tags).values(repository_id=repo, name="latest", manifest_id=ids[A],
                                         updated_at=1))
    db.dispose()
    yield url


def move_latest(url: str, digest: str) -> None:
    """Point the tag at `digest` through a connection of its own (another process's, in
    the test that forks)."""
    db = Database(url)
    with db.write() as conn:
        target = conn.execute(manifests.select().where(manifests.c.digest == digest)).one()
        conn.execute(update(tags).where(tags.c.name == "latest")
                     .values(manifest_id=target.id, updated_at=2))
    db.dispose()


def test_a_moved_tag_is_seen_by_the_next_read(url: str) -> None:
    db = Database(url)
    store = MetadataStore(db)
    queries: list[str | None] = []
    original = store._read_manifest

    def counted(repository: str, digest: str | None, tag: str | None):  # type: ignore[no-untyped-def]
        queries.append(tag)
        return original(repository, digest, tag)

    store._read_manifest = counted  # type: ignore[method-assign]

    def latest() -> str:
        record = db.inline_read(lambda: store.get_manifest("team/app", tag="latest"))
        assert record is not None
        return record.digest

    assert latest() == A and latest() == A
    assert queries == ["latest"]  # the second read was remembered
    move_latest(url, B)  # another connection commits
    assert latest() == B
    fork = multiprocessing.get_context("fork").Process(target=move_latest, args=(url, A))
    fork.start()
    fork.join(30)
    assert fork.exitcode == 0
    assert latest() == A  # another process committed
    assert queries == ["latest"] * 3
    # Off the loop (a thread's read, PostgreSQL) nothing is remembered.
    assert store.get_manifest("team/app", tag="latest").digest == A  # type: ignore[union-attr]
    assert store.get_manifest("team/app", tag="latest").digest == A  # type: ignore[union-attr]
    assert queries == ["latest"] * 5
    db.dispose()


def test_versioned_cache_forgets_on_a_new_version_and_stays_bounded() -> None:
    cache: VersionedCache[str] = VersionedCache(max_entries=2)
    assert cache.get(1, "k") is None
    cache.put(1, "k", "v")
    assert cache.get(1, "k") == "v"
    assert cache.get(2, "k") is None  # a commit happened somewhere: all forgotten
    cache.put(1, "old", "x")  # read under a version already left behind: not kept
    assert cache.get(2, "old") is None
    for key in ("a", "b", "c"):
        cache.put(2, key, key)
    assert cache.get(2, "c") == "c" and cache.get(2, "a") is None
