"""Upload sessions and blob links: the statements of every blob push, on the fast path
(sql.py). Part of the MetadataStore (metadata.py), which mixes this class in."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, bindparam, delete, insert, select, update

from cargohold.storage.database import Database
from cargohold.storage.ecr_settings import CREATE_ON_PUSH, apply_creation_template
from cargohold.storage.records import RepositoryNotFound, UploadRecord, now_us
from cargohold.storage.schema import blobs, repositories, repository_blobs, upload_sessions
from cargohold.storage.sql import Prepared, Tx
from cargohold.storage.upload_progress import upload_progress

REPOSITORY_ID = Prepared(select(repositories.c.id).where(repositories.c.name == bindparam("name")))
_CREATE_REPOSITORY = Prepared(lambda upsert: upsert(repositories).values(
    name=bindparam("name"), created_at=bindparam("now"),
).on_conflict_do_nothing(index_elements=["name"]).returning(repositories.c.id))
_INSERT_BLOB = Prepared(lambda upsert: upsert(blobs).values(
    digest=bindparam("digest"), size=bindparam("size"), created_at=bindparam("now"),
).on_conflict_do_nothing(index_elements=["digest"]))
# A fresh link restarts the garbage-collection grace period of an unreferenced blob.
_LINK_BLOB = Prepared(lambda upsert: upsert(repository_blobs).values(
    repository_id=bindparam("repo_id"), digest=bindparam("digest"), linked_at=bindparam("now"),
).on_conflict_do_update(index_elements=["repository_id", "digest"],
                        set_={"linked_at": bindparam("now")}))
_INSERT_UPLOAD = Prepared(insert(upload_sessions).values(
    id=bindparam("id"), repository_id=bindparam("repo_id"), algorithm=bindparam("algorithm"),
    size=0, created_at=bindparam("now"), updated_at=bindparam("now")))
# The session with the digest and scratch states saved at its acknowledged size, if any.
_GET_UPLOAD = Prepared(
    select(upload_sessions.c.id, upload_sessions.c.algorithm, upload_sessions.c.size,
           upload_sessions.c.last_chunk_size, upload_sessions.c.undersized_part,
           upload_sessions.c.created_at, upload_progress.c.hash_state,
           upload_progress.c.scratch_state)
    .join(repositories, repositories.c.id == upload_sessions.c.repository_id)
    .outerjoin(upload_progress, and_(upload_progress.c.upload_id == upload_sessions.c.id,
                                     upload_progress.c.size == upload_sessions.c.size))
    .where(upload_sessions.c.id == bindparam("id"), repositories.c.name == bindparam("name")))
# Deleted only from the named repository; RETURNING says which one (a row: it was there).
_DELETE_UPLOAD = Prepared(
    delete(upload_sessions).where(
        upload_sessions.c.id == bindparam("id"),
        upload_sessions.c.repository_id == select(repositories.c.id).where(
            repositories.c.name == bindparam("name")).scalar_subquery())
    .returning(upload_sessions.c.repository_id))


class UploadSessionStore:
    """Repositories by name, blob links and upload sessions."""

    database: Database

    def _ensure_repository(self, tx: Tx, name: str, create: bool,
                           applied_for: str = CREATE_ON_PUSH) -> int:
        repo_id = tx.scalar(REPOSITORY_ID, {"name": name})
        if repo_id is not None:
            return int(repo_id)
        if not create:
            raise RepositoryNotFound(name)
        conn = tx.sa  # a creation template runs general statements: on a full Connection
        created = tx.scalar(_CREATE_REPOSITORY, {"name": name, "now": now_us()})
        if created is not None:
            # Created by a push: its creation template (if any) configures it right here.
            apply_creation_template(conn, self.database.insert, int(created), name, applied_for)
            return int(created)
        repo_id = tx.scalar(REPOSITORY_ID, {"name": name})
        assert repo_id is not None
        return int(repo_id)

    @staticmethod
    def _link_blob(tx: Tx, repo_id: int, digest: str, size: int) -> None:
        now = now_us()
        tx.execute(_INSERT_BLOB, {"digest": digest, "size": size, "now": now})
        tx.execute(_LINK_BLOB, {"repo_id": repo_id, "digest": digest, "now": now})

    def link_blob(self, repository: str, digest: str, size: int, *, create: bool) -> None:
        self.database.transaction(lambda tx: self._link_blob(
            tx, self._ensure_repository(tx, repository, create), digest, size))

    # -- upload sessions -----------------------------------------------------------------

    def create_upload(self, repository: str, upload_id: str, algorithm: str, *,
                      create: bool) -> int:
        """Open a session of size 0; its creation time (µs)."""
        now = now_us()

        def unit(tx: Tx) -> None:
            repo_id = self._ensure_repository(tx, repository, create)
            tx.execute(_INSERT_UPLOAD, {"id": upload_id, "repo_id": repo_id,
                                        "algorithm": algorithm, "now": now})
        self.database.transaction(unit)
        return now

    def get_upload(self, repository: str, upload_id: str) -> UploadRecord | None:
        with self.database.fast_read() as tx:
            row = tx.one(_GET_UPLOAD, {"id": upload_id, "name": repository})
        if row is None:
            return None
        return UploadRecord(row[0], repository, row[1], row[2], row[3], bool(row[4]), row[5],
                            None if row[6] is None else bytes(row[6]), row[7])

    def record_upload_size(self, upload_id: str, old_size: int, new_size: int) -> bool:
        """Acknowledge a chunk: move the session from old_size to new_size, if still there."""
        with self.database.write() as conn:
            result = conn.execute(update(upload_sessions).where(
                upload_sessions.c.id == upload_id, upload_sessions.c.size == old_size,
            ).values(size=new_size, last_chunk_size=new_size - old_size, updated_at=now_us()))
            return result.rowcount > 0

    def remove_stale_uploads(self, idle_since: int) -> list[str]:
        """Forget upload sessions untouched since `idle_since` (µs); returns their ids."""
        with self.database.write() as conn:
            stale = list(conn.execute(select(upload_sessions.c.id).where(
                upload_sessions.c.updated_at < idle_since)).scalars())
            if stale:
                conn.execute(delete(upload_sessions).where(upload_sessions.c.id.in_(stale)))
        return stale

    def known_uploads(self, upload_ids: Sequence[str]) -> set[str]:
        if not upload_ids:
            return set()
        with self.database.read() as conn:
            return set(conn.execute(select(upload_sessions.c.id).where(
                upload_sessions.c.id.in_(list(upload_ids)))).scalars())

    def mark_undersized_part(self, upload_id: str) -> None:
        """Remember that a part other than the last was below ECR's minimum part size."""
        with self.database.write() as conn:
            conn.execute(update(upload_sessions).where(upload_sessions.c.id == upload_id)
                         .values(undersized_part=True))

    def complete_upload(self, repository: str, upload_id: str, digest: str, size: int) -> bool:
        """Close a session and link its blob in one transaction; False if the session is gone."""
        def unit(tx: Tx) -> bool:
            repo_id = tx.scalar(_DELETE_UPLOAD, {"id": upload_id, "name": repository})
            if repo_id is None:
                return False
            self._link_blob(tx, int(repo_id), digest, size)
            return True
        return self.database.transaction(unit)

    def delete_upload(self, repository: str, upload_id: str) -> bool:
        return self.database.transaction(lambda tx: tx.scalar(
            _DELETE_UPLOAD, {"id": upload_id, "name": repository}) is not None)
