"""The metadata store: every read and write of registry metadata, one transaction per method.

Its parts: records.py (what it returns and raises, re-exported here), upload_sessions.py
(repositories by name, blob links, upload sessions), manifest_writes.py (manifest pushes);
the hot paths run on sql.py's fast path.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, or_, select

from cargohold.storage.database import Database
from cargohold.storage.events import Change, Outbox
from cargohold.storage.loop_cache import VersionedCache
from cargohold.storage.manifest_writes import ManifestWrites
from cargohold.storage.records import (
    DeclaredReference,
    DescriptorMismatch,
    ManifestPut,
    ManifestRecord,
    MissingReferences,
    NewManifest,
    ReferrerRecord,
    RepositoryNotFound,
    TagImmutable,
    UploadRecord,
    now_us,
)
from cargohold.storage.schema import (
    blobs,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from cargohold.storage.sql import Prepared, Tx, tx_of
from cargohold.storage.upload_sessions import REPOSITORY_ID

__all__ = [
    "DeclaredReference", "DescriptorMismatch", "ManifestPut", "ManifestRecord", "MetadataStore",
    "MissingReferences", "NewManifest", "ReferrerRecord", "RepositoryNotFound", "TagImmutable",
    "UploadRecord", "now_us",
]


# Hot-path reads, compiled once (sql.py): constructing a statement costs more than running it.
CACHED_BYTES = 16 * 1024  # manifests up to this size are remembered between reads on the loop
_MANIFEST_COLUMNS = (manifests.c.digest, manifests.c.media_type, manifests.c.size,
                     manifests.c.content)
_MANIFEST_BY_DIGEST = Prepared(
    select(*_MANIFEST_COLUMNS)
    .join(repositories, repositories.c.id == manifests.c.repository_id)
    .where(repositories.c.name == bindparam("repository"),
           manifests.c.digest == bindparam("digest"))
)
_MANIFEST_BY_TAG = Prepared(
    select(*_MANIFEST_COLUMNS)
    .join(repositories, repositories.c.id == manifests.c.repository_id)
    .join(tags, tags.c.manifest_id == manifests.c.id)
    .where(repositories.c.name == bindparam("repository"), tags.c.name == bindparam("tag"))
)
# Every tag name is non-empty, so "after ''" is "from the first".
_TAGS_AFTER = (select(tags.c.name)
               .where(tags.c.repository_id == bindparam("repo_id"), tags.c.name > bindparam("last"))
               .order_by(tags.c.name))
_TAGS = Prepared(_TAGS_AFTER)
_TAGS_PAGE = Prepared(_TAGS_AFTER.limit(bindparam("limit")))
_LINKED_BLOB = (
    select(blobs.c.size)
    .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
    .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
    .where(repositories.c.name == bindparam("repository"), blobs.c.digest == bindparam("digest"))
)
_BLOB_SIZE = Prepared(_LINKED_BLOB)
# FOR SHARE of the source's link: garbage collection cannot unlink (and so delete) the blob
# while a mount links it elsewhere.
_MOUNTABLE_BLOB_SIZE = Prepared(_LINKED_BLOB.with_for_update(read=True, of=repository_blobs))
# PostgreSQL: a mount locks the source's and the target's links of the blob before it reads or
# writes either, in key order, as a collection batch locks the links it unlinks. Taking the
# source's first and the target's at its upsert could deadlock with a batch that holds the
# target's (the lower key) and waits for the source's.
_MOUNT_LINKS_LOCK = Prepared(
    select(repository_blobs.c.repository_id)
    .where(repository_blobs.c.digest == bindparam("digest"),
           or_(repository_blobs.c.repository_id == bindparam("target_id"),
               repository_blobs.c.repository_id.in_(
                   select(repositories.c.id)
                   .where(repositories.c.name == bindparam("repository")))))
    .order_by(repository_blobs.c.repository_id)
    .with_for_update())


class MetadataStore(ManifestWrites):
    """Registry metadata in a SQL database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert
        self._read = database.read
        self._write = database.write
        # Events go to the outbox in the same transaction as the change they report.
        self.outbox = Outbox()
        self._manifests: VersionedCache[ManifestRecord] = VersionedCache()  # loop_cache.py

    # -- repositories --------------------------------------------------------------------

    @staticmethod
    def _repository_id(conn: Connection, name: str) -> int | None:
        return tx_of(conn).scalar(REPOSITORY_ID, {"name": name})

    def list_repositories(self, last: str | None, limit: int | None) -> list[str]:
        query = select(repositories.c.name).order_by(repositories.c.name)
        if last:
            query = query.where(repositories.c.name > last)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # -- blobs ---------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob linked into the repository, None when it is not visible there."""
        with self.database.fast_read() as tx:
            return tx.scalar(_BLOB_SIZE, {"repository": repository, "digest": digest})

    def mount_blob(self, repository: str, source: str, digest: str, *, create: bool) -> bool:
        """Link a blob that `source` holds into `repository`; False when source lacks it."""
        postgres = not self.database.sqlite

        def unit(tx: Tx) -> bool:
            target_id = tx.scalar(REPOSITORY_ID, {"name": repository})
            if postgres:  # (a target that does not exist yet has no link to lock)
                tx.execute(_MOUNT_LINKS_LOCK, {"repository": source, "digest": digest,
                                               "target_id": -1 if target_id is None else target_id})
            size = tx.scalar(_MOUNTABLE_BLOB_SIZE, {"repository": source, "digest": digest})
            if size is None:
                return False
            if target_id is None:
                target_id = self._ensure_repository(tx, repository, create)
            self._link_blob(tx, int(target_id), digest, size)
            return True
        return self.database.transaction(unit)

    def unlink_blob(self, repository: str, digest: str) -> bool:
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            result = conn.execute(delete(repository_blobs).where(
                repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest == digest))
            return result.rowcount > 0

    # -- manifests and tags --------------------------------------------------------------

    def get_manifest(self, repository: str, *, digest: str | None = None,
                     tag: str | None = None) -> ManifestRecord | None:
        version = self.database.loop_data_version()
        key = (repository, digest, tag)
        if version is not None:
            cached = self._manifests.get(version, key)
            if cached is not None:
                return cached
        record = self._read_manifest(repository, digest, tag)
        if version is not None and record is not None and len(record.content) <= CACHED_BYTES:
            self._manifests.put(version, key, record)
        return record

    def _read_manifest(self, repository: str, digest: str | None,
                       tag: str | None) -> ManifestRecord | None:
        if tag is not None:
            statement, params = _MANIFEST_BY_TAG, {"repository": repository, "tag": tag}
        else:
            statement, params = _MANIFEST_BY_DIGEST, {"repository": repository, "digest": digest}
        with self.database.fast_read() as tx:
            row = tx.one(statement, params)
        if row is None:
            return None
        return ManifestRecord(row[0], row[1], row[2], bytes(row[3]))

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest and every tag that points at it."""
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            gone = conn.execute(select(manifests.c.media_type, manifests.c.size).where(
                manifests.c.repository_id == repo_id, manifests.c.digest == digest)).first()
            result = conn.execute(delete(manifests).where(
                manifests.c.repository_id == repo_id, manifests.c.digest == digest))
            if result.rowcount > 0 and gone is not None:
                self.outbox.record(conn, [Change("delete", repository, digest, gone.media_type,
                                                 gone.size)], now_us())
            return result.rowcount > 0

    def delete_tag(self, repository: str, tag: str) -> bool:
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            gone = conn.execute(
                select(manifests.c.digest, manifests.c.media_type, manifests.c.size)
                .join(tags, tags.c.manifest_id == manifests.c.id)
                .where(tags.c.repository_id == repo_id, tags.c.name == tag)).first()
            result = conn.execute(delete(tags).where(
                tags.c.repository_id == repo_id, tags.c.name == tag))
            if result.rowcount > 0 and gone is not None:
                self.outbox.record(conn, [Change("delete", repository, gone.digest,
                                                 gone.media_type, gone.size, tag)], now_us())
            return result.rowcount > 0

    def list_tags(self, repository: str, last: str | None, limit: int | None) -> list[str] | None:
        """Tag names in byte order after `last`; None when the repository does not exist."""
        params = {"name": repository, "last": last or "", "limit": limit}
        with self.database.fast_read() as tx:
            repo_id = tx.scalar(REPOSITORY_ID, params)
            if repo_id is None:
                return None
            params["repo_id"] = repo_id
            rows = tx.execute(_TAGS if limit is None else _TAGS_PAGE, params).fetchall()
        return [row[0] for row in rows]
