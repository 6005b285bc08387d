"""The garbage collector's reads and writes.

Safety comes from the write methods, not from the plan that nominates candidates: each batch
re-checks, inside its own transaction, that every candidate is still garbage, and deletes only
those. On PostgreSQL the candidates' rows are locked first (`FOR UPDATE`) and re-checked by a
later statement, which under READ COMMITTED sees everything committed by the time the locks
were granted; the writers that could make them live again (a manifest PUT, a blob link, an
upload's pin) lock the same rows `FOR SHARE`. On SQLite writers are serialised anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.schema import (
    blobs,
    manifest_references,
    manifests,
    repository_blobs,
    tags,
    upload_sessions,
)
from cargohold.storage.schema_retention import blob_pins, blob_tombstones
from cargohold.storage.sql import Prepared, Tx


@dataclass(frozen=True, slots=True)
class ManifestNode:
    id: int
    repository_id: int
    digest: str
    subject_digest: str | None
    pushed_at: int


@dataclass(slots=True)
class Graph:
    """Everything garbage collection decides on, read at the start of a run."""

    manifests: list[ManifestNode]
    tagged: set[int]
    child_refs: list[tuple[int, str]]     # (parent manifest id, child digest)
    blob_refs: list[tuple[int, str]]      # (manifest id, blob digest)
    links: list[tuple[int, str, int]]     # (repository id, digest, linked_at)
    blob_sizes: dict[str, int]
    pinned: set[str]


DIGEST_LOCK_SPACE = 0x4348  # the advisory-lock key space of per-digest locks
_PARENT = aliased(manifests)
_SUBJECT = aliased(manifests)


def _subject_missing() -> ColumnElement[bool]:
    """A referrer whose subject is no longer in its repository."""
    return and_(manifests.c.subject_digest.is_not(None), not_(exists().where(
        _SUBJECT.c.repository_id == manifests.c.repository_id,
        _SUBJECT.c.digest == manifests.c.subject_digest)))


_PIN_DIGEST_LOCK = Prepared(select(func.pg_advisory_xact_lock(
    bindparam("space"), func.hashtext(bindparam("digest")))))
_PIN_BLOB_ROW_LOCK = Prepared(select(blobs.c.digest).where(blobs.c.digest == bindparam("digest"))
                              .with_for_update(read=True))
_PIN_TOMBSTONE = Prepared(select(blob_tombstones.c.digest).where(
    blob_tombstones.c.digest == bindparam("digest")))
_PIN = Prepared(lambda upsert: upsert(blob_pins).from_select(
    ["upload_id", "digest", "pinned_at"],
    select(upload_sessions.c.id, bindparam("digest", type_=blob_pins.c.digest.type),
           bindparam("now", type_=blob_pins.c.pinned_at.type))
    .where(upload_sessions.c.id == bindparam("upload_id")),
).on_conflict_do_update(index_elements=["upload_id"], set_={"digest": bindparam("digest")}))


class CollectionStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = database.engine.dialect.name == "postgresql"
        self._insert = database.insert

    # -- the plan's input ----------------------------------------------------------------

    def graph(self) -> Graph:
        with self.database.read() as conn:
            nodes = [ManifestNode(*row) for row in conn.execute(select(
                manifests.c.id, manifests.c.repository_id, manifests.c.digest,
                manifests.c.subject_digest, manifests.c.pushed_at))]
            tagged = set(conn.execute(select(tags.c.manifest_id).distinct()).scalars())
            refs = conn.execute(select(manifest_references.c.manifest_id,
                                       manifest_references.c.kind,
                                       manifest_references.c.digest)).all()
            links = [(r[0], r[1], r[2]) for r in conn.execute(select(
                repository_blobs.c.repository_id, repository_blobs.c.digest,
                repository_blobs.c.linked_at))]
            sizes = {r[0]: r[1] for r in conn.execute(select(blobs.c.digest, blobs.c.size))}
            pinned = set(conn.execute(select(blob_pins.c.digest)).scalars())
        return Graph(nodes, tagged,
                     [(r[0], r[2]) for r in refs if r[1] == "manifest"],
                     [(r[0], r[2]) for r in refs if r[1] == "blob"],
                     links, sizes, pinned)

    def stale_upload_count(self, idle_since: int) -> int:
        with self.database.read() as conn:
            return int(conn.execute(select(func.count()).select_from(upload_sessions).where(
                upload_sessions.c.updated_at < idle_since)).scalar_one())

    # -- deletions, one short transaction per batch ----------------------------------------

    def delete_manifests(self, ids: Sequence[int], cutoff: int,
                         delete_untagged: bool) -> list[int]:
        """Delete those of `ids` that are still garbage: referrers whose subject is gone and,
        when asked, untagged manifests that nothing reaches, pushed before `cutoff`."""
        if not ids:
            return []
        untagged = and_(
            manifests.c.subject_digest.is_(None),
            not_(exists().where(tags.c.manifest_id == manifests.c.id)),
            not_(exists().where(
                manifest_references.c.kind == "manifest",
                manifest_references.c.digest == manifests.c.digest,
                _PARENT.c.id == manifest_references.c.manifest_id,
                _PARENT.c.repository_id == manifests.c.repository_id)),
        )
        garbage = _subject_missing()
        if delete_untagged:
            garbage = or_(garbage, untagged)
        with self.database.write() as conn:
            self._lock_rows(conn, manifests, manifests.c.id.in_(list(ids)))
            still = list(conn.execute(select(manifests.c.id).where(
                manifests.c.id.in_(list(ids)), manifests.c.pushed_at < cutoff,
                garbage)).scalars())
            if still:
                conn.execute(delete(manifests).where(manifests.c.id.in_(still)))
            return still

    def delete_links(self, pairs: Sequence[tuple[int, str]], cutoff: int) -> int:
        """Unlink blobs that no manifest of their repository references (linked before
        `cutoff`)."""
        if not pairs:
            return 0
        chosen = tuple_(repository_blobs.c.repository_id, repository_blobs.c.digest).in_(
            list(pairs))
        referenced = exists().where(
            manifest_references.c.kind == "blob",
            manifest_references.c.digest == repository_blobs.c.digest,
            manifests.c.id == manifest_references.c.manifest_id,
            manifests.c.repository_id == repository_blobs.c.repository_id)
        with self.database.write() as conn:
            self._lock_rows(conn, repository_blobs, chosen)
            result = conn.execute(delete(repository_blobs).where(
                chosen, repository_blobs.c.linked_at < cutoff, not_(referenced)))
            return int(result.rowcount)

    def tombstone_blobs(self, digests: Sequence[str]) -> list[tuple[str, int]]:
        """Delete the rows of blobs no repository links, no manifest names and no upload
        pins, and leave a tombstone for each: their bytes are deleted after this commits."""
        if not digests:
            return []
        with self.database.write() as conn:
            self._lock_rows(conn, blobs, blobs.c.digest.in_(list(digests)))
            rows = conn.execute(select(blobs.c.digest, blobs.c.size).where(
                blobs.c.digest.in_(list(digests)),
                not_(exists().where(repository_blobs.c.digest == blobs.c.digest)),
                not_(exists().where(blob_pins.c.digest == blobs.c.digest)),
                # A manifest naming it keeps it too, even where its link was deleted.
                not_(exists().where(manifest_references.c.kind == "blob",
                                    manifest_references.c.digest == blobs.c.digest)),
            )).all()
            gone = [(row.digest, int(row.size)) for row in rows]
            if gone:
                now = now_us()
                conn.execute(delete(blobs).where(blobs.c.digest.in_([d for d, _ in gone])))
                conn.execute(self._insert(blob_tombstones).values(
                    [{"digest": d, "size": s, "created_at": now} for d, s in gone]
                ).on_conflict_do_nothing(index_elements=["digest"]))
            return gone

    def tombstones(self, limit: int) -> list[tuple[str, int]]:
        with self.database.read() as conn:
            return [(r[0], int(r[1])) for r in conn.execute(
                select(blob_tombstones.c.digest, blob_tombstones.c.size)
                .order_by(blob_tombstones.c.digest).limit(limit))]

    def clear_tombstones(self, digests: Sequence[str]) -> None:
        if digests:
            with self.database.write() as conn:
                conn.execute(delete(blob_tombstones).where(
                    blob_tombstones.c.digest.in_(list(digests))))

    # -- the upload side -------------------------------------------------------------------

    def tombstone_orphan(self, digest: str, size: int) -> bool:
        """Claim bytes that no blob row and no upload accounts for, for deletion (fsck)."""
        with self.database.write() as conn:
            self._lock_digest(conn, digest)
            if conn.execute(select(blobs.c.digest).where(blobs.c.digest == digest)
                            ).first() is not None:
                return False
            if conn.execute(select(blob_pins.c.digest).where(blob_pins.c.digest == digest)
                            ).first() is not None:
                return False
            conn.execute(self._insert(blob_tombstones).values(
                digest=digest, size=size, created_at=now_us(),
            ).on_conflict_do_nothing(index_elements=["digest"]))
            return True

    def pin_blob(self, upload_id: str, digest: str) -> bool:
        """Protect `digest` for the rest of upload `upload_id`; False while collection is
        still deleting an older copy of those bytes (the caller waits and tries again).
        Every upload runs it: on the fast path (sql.py)."""
        params = {"upload_id": upload_id, "digest": digest, "now": now_us(),
                  "space": DIGEST_LOCK_SPACE}

        def unit(tx: Tx) -> bool:
            if self._lock:  # as _lock_digest and _lock_rows(blobs, share=True)
                tx.execute(_PIN_DIGEST_LOCK, params)
                tx.execute(_PIN_BLOB_ROW_LOCK, params)
            if tx.one(_PIN_TOMBSTONE, params) is not None:
                return False
            # Pinned only while the session exists (when it is gone, completing it will fail
            # anyway): the pin's foreign key needs it.
            tx.execute(_PIN, params)
            return True
        return self.database.transaction(unit)

    def pinned_digest(self, upload_id: str) -> str | None:
        """The digest upload `upload_id` pinned (it verified as that digest), if any."""
        with self.database.engine.connect() as conn:
            return conn.execute(select(blob_pins.c.digest).where(
                blob_pins.c.upload_id == upload_id)).scalar()

    def _lock_digest(self, conn: Connection, digest: str) -> None:
        """Serialise pins and orphan claims of one digest when no row exists to lock yet."""
        if self._lock:
            conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:digest))"),
                         {"space": DIGEST_LOCK_SPACE, "digest": digest})

    def _lock_rows(self, conn: Connection, table: Table, where: ColumnElement[bool],
                   share: bool = False) -> None:
        if self._lock:
            # In key order, as the writers lock them: lock waits, never deadlocks.
            key = list(table.primary_key.columns)
            conn.execute(select(*key).where(where).order_by(*key)
                         .with_for_update(read=share))


