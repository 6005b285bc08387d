"""The metadata store on both engines it supports: SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbfixtures import database_url, postgres_available

from cargohold.storage.database import Database
from cargohold.storage.metadata import (
    MetadataStore,
    MissingReferences,
    NewManifest,
    RepositoryNotFound,
    now_us,
)
from cargohold.storage.referrers import referrers_page

IN_CI = bool(__import__("os").environ.get("CI"))
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not IN_CI and not postgres_available(), reason="PostgreSQL not reachable"))]

LAYER = "sha256:" + "1" * 64
CONFIG = "sha256:" + "2" * 64
M1 = "sha256:" + "a" * 64
M2 = "sha256:" + "b" * 64
INDEX = "sha256:" + "c" * 64


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    with database_url(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        database.migrate()  # idempotent
        yield MetadataStore(database)
        database.dispose()


def manifest(digest: str = M1, blobs: frozenset[str] = frozenset({LAYER, CONFIG}),
             children: frozenset[str] = frozenset(), subject: str | None = None,
             artifact_type: str | None = "application/vnd.example+json") -> NewManifest:
    return NewManifest(digest=digest, media_type="application/vnd.oci.image.manifest.v1+json",
                       content=b'{"digest":"%s"}' % digest.encode(), artifact_type=artifact_type,
                       config_media_type="application/vnd.example+json",
                       subject_digest=subject, annotations={"a": "b"} if subject else None,
                       blob_digests=blobs, child_digests=children)


def seed(store: MetadataStore, repo: str = "team/app") -> None:
    store.link_blob(repo, LAYER, 10, create=True)
    store.link_blob(repo, CONFIG, 2, create=True)


def test_missing_references_change_nothing(store: MetadataStore) -> None:
    store.link_blob("team/app", CONFIG, 2, create=True)
    with pytest.raises(MissingReferences) as exc:
        store.put_manifest("team/app", manifest(), ["v1"], create=True)
    assert exc.value.blobs == [LAYER]
    assert store.get_manifest("team/app", digest=M1) is None
    assert store.list_tags("team/app", None, None) == []


def test_put_get_tag_and_move(store: MetadataStore) -> None:
    seed(store)
    store.put_manifest("team/app", manifest(M1), ["v1", "latest"], create=True)
    store.put_manifest("team/app", manifest(M2), ["latest"], create=True)
    assert store.get_manifest("team/app", tag="v1").digest == M1
    assert store.get_manifest("team/app", tag="latest").digest == M2
    record = store.get_manifest("team/app", digest=M1)
    assert record is not None and record.content == b'{"digest":"%s"}' % M1.encode()


def test_index_needs_its_children(store: MetadataStore) -> None:
    seed(store)
    index = manifest(INDEX, blobs=frozenset(), children=frozenset({M1}))
    with pytest.raises(MissingReferences) as exc:
        store.put_manifest("team/app", index, ["multi"], create=True)
    assert exc.value.manifests == [M1]
    store.put_manifest("team/app", manifest(M1), [], create=True)
    store.put_manifest("team/app", index, ["multi"], create=True)
    assert store.get_manifest("team/app", tag="multi").digest == INDEX


def test_delete_manifest_removes_its_tags(store: MetadataStore) -> None:
    seed(store)
    store.put_manifest("team/app", manifest(), ["v1", "v2"], create=True)
    assert store.delete_manifest("team/app", M1)
    assert store.list_tags("team/app", None, None) == []
    assert not store.delete_manifest("team/app", M1)


def test_tags_sort_bytewise_and_paginate(store: MetadataStore) -> None:
    seed(store)
    names = ["b", "a", "B", "_x", "a-1", "a.1", "Z9", "0"]
    store.put_manifest("team/app", manifest(), names, create=True)
    assert store.list_tags("team/app", None, None) == sorted(names)
    assert store.list_tags("team/app", "a", 2) == ["a-1", "a.1"]
    assert store.list_tags("missing/repo", None, None) is None


def test_blob_visibility_is_per_repository(store: MetadataStore) -> None:
    seed(store, "one")
    store.create_upload("two", "00000000-0000-4000-8000-000000000000", "sha256", create=True)
    assert store.blob_size("one", LAYER) == 10
    assert store.blob_size("two", LAYER) is None
    assert not store.mount_blob("two", "nowhere", LAYER, create=True)
    assert store.mount_blob("two", "one", LAYER, create=True)
    assert store.blob_size("two", LAYER) == 10
    assert store.unlink_blob("one", LAYER)
    assert store.blob_size("one", LAYER) is None
    assert store.blob_size("two", LAYER) == 10


def test_create_on_push_disabled(store: MetadataStore) -> None:
    with pytest.raises(RepositoryNotFound):
        store.link_blob("new/repo", LAYER, 1, create=False)
    assert "new/repo" not in store.list_repositories(None, None)


def test_upload_session_lifecycle(store: MetadataStore) -> None:
    upload_id = "11111111-1111-4111-8111-111111111111"
    store.create_upload("team/app", upload_id, "sha512", create=True)
    record = store.get_upload("team/app", upload_id)
    assert record is not None and record.algorithm == "sha512"
    assert store.get_upload("other", upload_id) is None
    assert store.complete_upload("team/app", upload_id, LAYER, 10)
    assert not store.complete_upload("team/app", upload_id, LAYER, 10)
    assert store.blob_size("team/app", LAYER) == 10


def test_referrers_and_filter(store: MetadataStore) -> None:
    seed(store)
    store.put_manifest("team/app", manifest(M1, subject=INDEX), [], create=True)
    store.put_manifest("team/app", manifest(M2, subject=INDEX, artifact_type="application/x.sbom"),
                       [], create=True)
    def digests(types: list[str] | None, after: int | None = None,
                limit: int = 10) -> list[str]:
        rows = referrers_page(store.database, "team/app", INDEX, types, after, limit)
        assert rows is not None
        return [record.digest for _, record in rows]

    assert digests(None) == [M1, M2]
    filtered = referrers_page(store.database, "team/app", INDEX, ["application/x.sbom"], None,
                              10)
    assert filtered is not None and [r.digest for _, r in filtered] == [M2]
    assert filtered[0][1].annotations == {"a": "b"}
    # A page, then the rest after its last row id.
    first = referrers_page(store.database, "team/app", INDEX, None, None, 1)
    assert first is not None and [r.digest for _, r in first] == [M1]
    assert digests(None, after=first[-1][0]) == [M2]
    assert referrers_page(store.database, "nobody/here", INDEX, None, None, 10) is None


def test_catalog_pagination(store: MetadataStore) -> None:
    for name in ["b/x", "a", "c", "a/b"]:
        store.link_blob(name, LAYER, 1, create=True)
    assert store.list_repositories(None, None) == ["a", "a/b", "b/x", "c"]
    assert store.list_repositories("a/b", 1) == ["b/x"]


def test_concurrent_pushes_of_one_manifest_and_tag(store: MetadataStore) -> None:
    seed(store)
    errors: list[BaseException] = []

    def push(index: int) -> None:
        try:
            store.put_manifest("team/app", manifest(M1 if index % 2 else M2), ["latest"],
                               create=True)
            store.link_blob(f"race/{index % 3}", LAYER, 10, create=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.get_manifest("team/app", tag="latest").digest in {M1, M2}
    assert store.list_repositories("race", 3) == ["race/0", "race/1", "race/2"]


def test_stale_upload_sessions_are_removed(store: MetadataStore) -> None:
    old, fresh = "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
    store.create_upload("team/app", old, "sha256", create=True)
    cutoff = now_us()
    store.create_upload("team/app", fresh, "sha256", create=True)
    assert store.remove_stale_uploads(cutoff) == [old]
    assert store.get_upload("team/app", old) is None
    assert store.get_upload("team/app", fresh) is not None
