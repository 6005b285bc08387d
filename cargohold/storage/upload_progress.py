"""Upload progress that must move between nodes: the running digest and the blob store's
scratch state at the acknowledged size, written in the same transaction as that size."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    LargeBinary,
    String,
    Table,
    Text,
    select,
    update,
)

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.schema import metadata, upload_sessions

upload_progress = Table(
    "upload_progress", metadata,
    Column("upload_id", String(64), ForeignKey("upload_sessions.id", ondelete="CASCADE"),
           primary_key=True),
    # The acknowledged size these states belong to (equal to upload_sessions.size when valid).
    Column("size", BigInteger, nullable=False),
    Column("hash_state", LargeBinary, nullable=True),
    Column("scratch_state", Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class UploadProgress:
    size: int
    hash_state: bytes | None
    scratch_state: str | None


class UploadProgressStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def acknowledge(self, upload_id: str, old_size: int, new_size: int,
                    hash_state: bytes | None, scratch_state: str | None) -> bool:
        """Move the session from old_size to new_size (if it is still there, at old_size) and
        save the states at new_size, atomically. False when another writer got there first."""
        with self.database.write() as conn:
            result = conn.execute(update(upload_sessions).where(
                upload_sessions.c.id == upload_id, upload_sessions.c.size == old_size,
            ).values(size=new_size, last_chunk_size=new_size - old_size, updated_at=now_us()))
            if result.rowcount == 0:
                return False
            values = {"size": new_size, "hash_state": hash_state, "scratch_state": scratch_state}
            statement = self.database.insert(upload_progress).values(upload_id=upload_id,
                                                                     **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["upload_id"],
                                                         set_=values))
            return True

    def load(self, upload_id: str) -> UploadProgress | None:
        with self.database.read() as conn:
            row = conn.execute(select(upload_progress.c.size, upload_progress.c.hash_state,
                                      upload_progress.c.scratch_state)
                               .where(upload_progress.c.upload_id == upload_id)).one_or_none()
        if row is None:
            return None
        return UploadProgress(row.size, row.hash_state, row.scratch_state)
