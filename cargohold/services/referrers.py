"""Referrers of a subject, a page at a time: for `/v2/<name>/referrers/<digest>` (an OCI image
index per page, the next page linked) and for ECR's ListImageReferrers (nextToken)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cargohold.services.storage import Storage
from cargohold.storage.metadata import ReferrerRecord
from cargohold.storage.referrers import referrers_page
from cargohold.wire.digest import parse_digest
from cargohold.wire.manifest import OCI_INDEX

PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ReferrersPage:
    records: list[ReferrerRecord]
    next_cursor: int | None  # the row id to continue after; None on the last page


def descriptor(record: ReferrerRecord) -> dict[str, Any]:
    shape: dict[str, Any] = {"mediaType": record.media_type, "digest": record.digest,
                             "size": record.size}
    if record.artifact_type:
        shape["artifactType"] = record.artifact_type
    if record.annotations:
        shape["annotations"] = record.annotations
    return shape


def image_index(records: list[ReferrerRecord]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [descriptor(record) for record in records]}


class ReferrerService:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def page(self, repository: str, subject: str, artifact_types: Sequence[str] | None,
                   after: int | None, limit: int = PAGE_SIZE) -> ReferrersPage | None:
        """One page of referrers (None: no such repository). `subject` must be a digest."""
        digest = str(parse_digest(subject))
        rows = await self.storage.read(referrers_page, self.storage.database, repository,
                                       digest, artifact_types, after, limit + 1)
        if rows is None:
            return None
        more = len(rows) > limit
        rows = rows[:limit]
        return ReferrersPage([record for _, record in rows],
                             rows[-1][0] if more and rows else None)
