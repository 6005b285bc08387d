"""Upload progress that must move between nodes: the running digest and the blob store's
scratch state at the acknowledged size, written in the same transaction as that size."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    update,
)

from cargohold.storage.database import Database
from cargohold.storage.records import now_us
from cargohold.storage.schema import metadata, upload_sessions
from cargohold.storage.sql import Prepared, Tx

upload_progress = Table(
    "upload_progress", metadata,
    Column("upload_id", String(64), ForeignKey("upload_sessions.id", ondelete="CASCADE"),
           primary_key=True),
    # The acknowledged size these states belong to (equal to upload_sessions.size when valid).
    Column("size", BigInteger, nullable=False),
    Column("hash_state", LargeBinary, nullable=True),
    Column("scratch_state", Text, nullable=True),
)


# Both statements of every acknowledged chunk, compiled once (sql.py).
_MOVE_SIZE = Prepared(update(upload_sessions).where(
    upload_sessions.c.id == bindparam("id"), upload_sessions.c.size == bindparam("old_size"),
).values(size=bindparam("new_size"), last_chunk_size=bindparam("chunk"),
         updated_at=bindparam("now")))
_SAVE_STATES = Prepared(lambda upsert: upsert(upload_progress).values(
    upload_id=bindparam("id"), size=bindparam("new_size"), hash_state=bindparam("hash_state"),
    scratch_state=bindparam("scratch_state"),
).on_conflict_do_update(index_elements=["upload_id"], set_={
    "size": bindparam("new_size"), "hash_state": bindparam("hash_state"),
    "scratch_state": bindparam("scratch_state")}))


class UploadProgressStore:
    """Saves the states; the session's record (MetadataStore.get_upload) reads them back."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def acknowledge(self, upload_id: str, old_size: int, new_size: int,
                    hash_state: bytes | None, scratch_state: str | None) -> bool:
        """Move the session from old_size to new_size (if it is still there, at old_size) and
        save the states at new_size, atomically. False when another writer got there first."""
        params = {"id": upload_id, "old_size": old_size, "new_size": new_size,
                  "chunk": new_size - old_size, "now": now_us(), "hash_state": hash_state,
                  "scratch_state": scratch_state}

        def unit(tx: Tx) -> bool:
            if tx.rowcount(_MOVE_SIZE, params) == 0:
                return False
            tx.execute(_SAVE_STATES, params)
            return True
        return self.database.transaction(unit)
