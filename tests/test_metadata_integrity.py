"""The metadata store refuses a manifest whose descriptors disagree with stored content, inside
the put transaction: on both engines, a refusal leaves no manifest, tag, reference, subject or
repository behind, even when the push would have created the repository or moved a tag."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbfixtures import database_url, postgres_available
from sqlalchemy import func, select

from cargohold.storage.database import Database
from cargohold.storage.metadata import (
    DeclaredReference,
    DescriptorMismatch,
    MetadataStore,
    MissingReferences,
    NewManifest,
)
from cargohold.storage.referrers import referrers_page
from cargohold.storage.schema import manifest_references, manifests, repositories, tags

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not os.environ.get("CI") and not postgres_available(), reason="PostgreSQL not reachable"))]
OCI = "application/vnd.oci.image.manifest.v1+json"
LAYER = "sha256:" + "1" * 64
CONFIG = "sha256:" + "2" * 64
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    with database_url(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        yield MetadataStore(database)
        database.dispose()


def manifest(digest: str, layer_size: int, subject: DeclaredReference | None = None
             ) -> NewManifest:
    declared = [DeclaredReference("config", "blob", CONFIG, 2),
                DeclaredReference("layers[0]", "blob", LAYER, layer_size)]
    if subject is not None:
        declared.append(subject)
    return NewManifest(digest=digest, media_type=OCI, content=digest.encode(),
                       artifact_type=None, config_media_type=None,
                       subject_digest=subject.digest if subject else None, annotations=None,
                       blob_digests=frozenset({CONFIG, LAYER}), child_digests=frozenset(),
                       declared=tuple(declared))


def counts(store: MetadataStore) -> tuple[int, ...]:
    with store.database.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(table)).scalar_one()
                     for table in (repositories, manifests, tags, manifest_references))


def test_size_mismatch_on_existing_tag_changes_nothing(store: MetadataStore) -> None:
    store.link_blob("team/app", LAYER, 10, create=True)
    store.link_blob("team/app", CONFIG, 2, create=True)
    store.put_manifest("team/app", manifest(OLD, 10), ["keep"], create=False)
    before = counts(store)
    for size in (0, 9, 11, 2**63 - 1):
        with pytest.raises(DescriptorMismatch) as exc:
            store.put_manifest("team/app", manifest(NEW, size), ["keep"], create=False)
        assert (exc.value.where, exc.value.stored, exc.value.declared) == ("layers[0]", 10, size)
    assert counts(store) == before
    record = store.get_manifest("team/app", tag="keep")
    assert record is not None and record.digest == OLD


def test_stored_subject_must_match(store: MetadataStore) -> None:
    store.link_blob("team/app", LAYER, 10, create=True)
    store.link_blob("team/app", CONFIG, 2, create=True)
    store.put_manifest("team/app", manifest(OLD, 10), ["keep"], create=False)
    before = counts(store)
    wrong_size = DeclaredReference("subject", "manifest", OLD, len(OLD) + 1, OCI)
    wrong_type = DeclaredReference("subject", "manifest", OLD, len(OLD), "application/x.other")
    for subject in (wrong_size, wrong_type):
        with pytest.raises(DescriptorMismatch) as exc:
            store.put_manifest("team/app", manifest(NEW, 10, subject), [], create=False)
        assert exc.value.where == "subject"
    assert counts(store) == before
    assert referrers_page(store.database, "team/app", OLD, None, None, 10) == []
    # A subject that is not stored (yet) cannot be checked: the referrer is accepted.
    absent = DeclaredReference("subject", "manifest", "sha256:" + "f" * 64, 999, OCI)
    store.put_manifest("team/app", manifest(NEW, 10, absent), [], create=False)
    assert [r.digest for _, r in referrers_page(store.database, "team/app", absent.digest, None,
                                                  None, 10) or []] == [NEW]


def test_refusal_does_not_create_the_repository(store: MetadataStore) -> None:
    # put_manifest inserts the repository first (create on push), then refuses: rolled back.
    store.link_blob("team/source", LAYER, 10, create=True)
    before = counts(store)
    with pytest.raises(MissingReferences):
        store.put_manifest("team/new", manifest(NEW, 10), ["v1"], create=True)
    assert counts(store) == before
    assert store.list_repositories(None, None) == ["team/source"]
