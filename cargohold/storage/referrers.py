"""Referrers a page at a time: manifests whose `subject` is a digest, in push order."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select

from cargohold.storage.database import Database
from cargohold.storage.metadata import ReferrerRecord
from cargohold.storage.schema import manifests, repositories


def referrers_page(database: Database, repository: str, subject: str,
                   artifact_types: Sequence[str] | None, after_id: int | None,
                   limit: int) -> list[tuple[int, ReferrerRecord]] | None:
    """Up to `limit` referrers after the manifest row `after_id`, each with its row id (the
    cursor of the next page); None when the repository does not exist."""
    with database.read() as conn:
        repo_id = conn.execute(select(repositories.c.id).where(
            repositories.c.name == repository)).scalar_one_or_none()
        if repo_id is None:
            return None
        query = (
            select(manifests.c.id, manifests.c.digest, manifests.c.media_type,
                   manifests.c.size, manifests.c.artifact_type, manifests.c.annotations)
            .where(manifests.c.repository_id == repo_id, manifests.c.subject_digest == subject)
            .order_by(manifests.c.id)
            .limit(limit)
        )
        if artifact_types is not None:
            query = query.where(manifests.c.artifact_type.in_(list(artifact_types)))
        if after_id is not None:
            query = query.where(manifests.c.id > after_id)
        rows = conn.execute(query).all()
    return [(row.id, ReferrerRecord(row.digest, row.media_type, row.size, row.artifact_type,
                                    json.loads(row.annotations) if row.annotations else None))
            for row in rows]
