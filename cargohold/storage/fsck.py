"""The metadata side of fsck: what the database says should exist, and the references it can
record again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.schema import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    upload_sessions,
)
from cargohold.storage.schema_retention import blob_pins, blob_tombstones


@dataclass(frozen=True, slots=True)
class StoredManifest:
    id: int
    repository_id: int
    repository: str
    digest: str
    media_type: str
    content: bytes


class FsckStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert

    def blob_sizes(self) -> dict[str, int]:
        with self.database.read() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(blobs.c.digest, blobs.c.size))}

    def protected_digests(self) -> set[str]:
        """Digests whose bytes an upload or a collection is handling right now."""
        with self.database.read() as conn:
            return (set(conn.execute(select(blob_pins.c.digest)).scalars())
                    | set(conn.execute(select(blob_tombstones.c.digest)).scalars()))

    def users_of(self, digests: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """For each digest: the repositories that link it and the manifests (repo@digest)
        that reference it."""
        found: dict[str, dict[str, list[str]]] = defaultdict(
            lambda: {"repositories": [], "manifests": []})
        if not digests:
            return {}
        with self.database.read() as conn:
            for name, digest in conn.execute(
                    select(repositories.c.name, repository_blobs.c.digest)
                    .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
                    .where(repository_blobs.c.digest.in_(list(digests)))):
                found[digest]["repositories"].append(name)
            for name, manifest, digest in conn.execute(
                    select(repositories.c.name, manifests.c.digest, manifest_references.c.digest)
                    .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                    .join(repositories, repositories.c.id == manifests.c.repository_id)
                    .where(manifest_references.c.digest.in_(list(digests)))):
                found[digest]["manifests"].append(f"{name}@{manifest}")
        return {d: {k: sorted(v) for k, v in users.items()} for d, users in found.items()}

    def manifests(self, batch: int = 500) -> Iterator[StoredManifest]:
        last = 0
        while True:
            with self.database.read() as conn:
                rows = conn.execute(
                    select(manifests.c.id, manifests.c.repository_id, repositories.c.name,
                           manifests.c.digest, manifests.c.media_type, manifests.c.content)
                    .join(repositories, repositories.c.id == manifests.c.repository_id)
                    .where(manifests.c.id > last).order_by(manifests.c.id).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                yield StoredManifest(row.id, row.repository_id, row.name, row.digest,
                                     row.media_type, bytes(row.content))
            last = rows[-1].id

    def references(self, manifest_id: int) -> set[tuple[str, str]]:
        with self.database.read() as conn:
            return {(r[0], r[1]) for r in conn.execute(
                select(manifest_references.c.kind, manifest_references.c.digest)
                .where(manifest_references.c.manifest_id == manifest_id))}

    def linked(self, repository_id: int, digests: Sequence[str]) -> set[str]:
        with self.database.read() as conn:
            return set(conn.execute(select(repository_blobs.c.digest).where(
                repository_blobs.c.repository_id == repository_id,
                repository_blobs.c.digest.in_(list(digests)))).scalars())

    def record_references(self, manifest_id: int, repository_id: int,
                          missing: Sequence[tuple[str, str]]) -> int:
        """Record references a manifest's content has but its rows lack, and link the blobs
        among them that exist into the repository (never inventing a blob row)."""
        with self.database.write() as conn:
            if conn.execute(select(manifests.c.id).where(manifests.c.id == manifest_id)
                            ).first() is None:
                return 0
            for kind, digest in missing:
                conn.execute(self._insert(manifest_references).values(
                    manifest_id=manifest_id, kind=kind, digest=digest,
                ).on_conflict_do_nothing())
                if kind == "blob" and conn.execute(select(blobs.c.digest).where(
                        blobs.c.digest == digest)).first() is not None:
                    conn.execute(self._insert(repository_blobs).values(
                        repository_id=repository_id, digest=digest, linked_at=now_us(),
                    ).on_conflict_do_nothing())
            return len(missing)

    def upload_ids(self) -> set[str]:
        with self.database.read() as conn:
            return set(conn.execute(select(upload_sessions.c.id)).scalars())
