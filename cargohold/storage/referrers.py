"""Referrers a page at a time: manifests whose `subject` is a digest, in push order."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select

from cargohold.storage.database import Database
from cargohold.storage.metadata import ReferrerRecord
from cargohold.storage.schema import manifests, repositories

PAGE = 1000

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


def all_referrers(database: Database, repository: str, subject: str,
                  limit: int | None = None) -> list[ReferrerRecord]:
    """The referrers of a subject (the first `limit` of them), read a page at a time; for
    callers that walk a graph (the console's tree, replication) rather than serve pages."""
    found: list[ReferrerRecord] = []
    after: int | None = None
    while limit is None or len(found) < limit:
        page = min(PAGE, limit - len(found)) if limit is not None else PAGE
        rows = referrers_page(database, repository, subject, None, after, page)
        if not rows:
            break
        found += [record for _, record in rows]
        after = rows[-1][0]
        if len(rows) < page:
            break
    return found
