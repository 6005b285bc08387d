"""Which repositories hold a blob: the candidates for a mount without `from`."""

from __future__ import annotations

from sqlalchemy import select

from cargohold.storage.database import Database
from cargohold.storage.schema import repositories, repository_blobs


def repositories_holding(database: Database, digest: str, exclude: str,
                         limit: int) -> list[str]:
    """Up to `limit` repositories (other than `exclude`) that link the blob, oldest link first."""
    query = (
        select(repositories.c.name)
        .join(repository_blobs, repository_blobs.c.repository_id == repositories.c.id)
        .where(repository_blobs.c.digest == digest, repositories.c.name != exclude)
        .order_by(repository_blobs.c.linked_at, repositories.c.id)
        .limit(limit)
    )
    with database.read() as conn:
        return list(conn.execute(query).scalars())
