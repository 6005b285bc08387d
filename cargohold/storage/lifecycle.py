"""Lifecycle policies, their previews, and the images a policy is evaluated on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, exists, not_, select, update
from sqlalchemy.orm import aliased

from cargohold.storage.database import Database
from cargohold.storage.metadata import RepositoryNotFound, now_us
from cargohold.storage.schema import manifest_references, manifests, repositories, tags
from cargohold.storage.schema_retention import lifecycle_policies, lifecycle_previews


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What a lifecycle rule looks at: tags, push time and last pull time (µs)."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: int
    last_pulled_at: int | None


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    text: str
    last_evaluated_at: int | None


@dataclass(frozen=True, slots=True)
class StoredPreview:
    text: str
    status: str
    results: list[dict[str, Any]]


_PARENT = aliased(manifests)
_SUBJECT = aliased(manifests)


class LifecycleStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert

    @staticmethod
    def _repository_id(conn: Connection, name: str) -> int:
        repo_id = conn.execute(select(repositories.c.id).where(repositories.c.name == name)
                               ).scalar_one_or_none()
        if repo_id is None:
            raise RepositoryNotFound(name)
        return int(repo_id)

    def put_policy(self, repository: str, text: str) -> None:
        with self.database.write() as conn:
            repo_id = self._repository_id(conn, repository)
            conn.execute(self._insert(lifecycle_policies).values(
                repository_id=repo_id, policy_text=text, updated_at=now_us(),
            ).on_conflict_do_update(index_elements=["repository_id"],
                                    set_={"policy_text": text, "updated_at": now_us()}))

    def get_policy(self, repository: str) -> StoredPolicy | None:
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            row = conn.execute(select(lifecycle_policies.c.policy_text,
                                      lifecycle_policies.c.last_evaluated_at)
                               .where(lifecycle_policies.c.repository_id == repo_id)
                               ).one_or_none()
        return None if row is None else StoredPolicy(row.policy_text, row.last_evaluated_at)

    def delete_policy(self, repository: str) -> StoredPolicy | None:
        with self.database.write() as conn:
            repo_id = self._repository_id(conn, repository)
            row = conn.execute(select(lifecycle_policies.c.policy_text,
                                      lifecycle_policies.c.last_evaluated_at)
                               .where(lifecycle_policies.c.repository_id == repo_id)
                               ).one_or_none()
            if row is None:
                return None
            conn.execute(delete(lifecycle_policies).where(
                lifecycle_policies.c.repository_id == repo_id))
        return StoredPolicy(row.policy_text, row.last_evaluated_at)

    def mark_evaluated(self, repository: str, at: int) -> None:
        with self.database.write() as conn:
            repo_id = self._repository_id(conn, repository)
            conn.execute(update(lifecycle_policies).where(
                lifecycle_policies.c.repository_id == repo_id).values(last_evaluated_at=at))

    def repositories_with_policies(self) -> list[str]:
        with self.database.read() as conn:
            return list(conn.execute(
                select(repositories.c.name)
                .join(lifecycle_policies, lifecycle_policies.c.repository_id == repositories.c.id)
                .order_by(repositories.c.name)).scalars())

    def images(self, repository: str) -> list[ImageFacts]:
        """The repository's images as lifecycle policies see them: every manifest except an
        index's children (they go with their index) and referrers of a present subject
        (they go with their subject)."""
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            child = exists().where(
                manifest_references.c.kind == "manifest",
                manifest_references.c.digest == manifests.c.digest,
                _PARENT.c.id == manifest_references.c.manifest_id,
                _PARENT.c.repository_id == repo_id)
            attached = exists().where(_SUBJECT.c.repository_id == repo_id,
                                      _SUBJECT.c.digest == manifests.c.subject_digest)
            found = (select(manifests.c.id, manifests.c.digest, manifests.c.pushed_at,
                            manifests.c.last_pulled_at)
                     .where(manifests.c.repository_id == repo_id, not_(child), not_(attached))
                     .cte("found"))
            rows = conn.execute(select(found, tags.c.name.label("tag"))
                                .outerjoin(tags, tags.c.manifest_id == found.c.id)
                                .order_by(found.c.id, tags.c.name)).all()
        grouped: dict[int, tuple[Any, list[str]]] = {}
        for row in rows:
            entry = grouped.setdefault(row.id, (row, []))
            if row.tag is not None:
                entry[1].append(row.tag)
        return [ImageFacts(row.digest, tuple(names), row.pushed_at, row.last_pulled_at)
                for row, names in grouped.values()]

    def children(self, repository: str, digest: str) -> list[str]:
        """The digests an index lists."""
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            return list(conn.execute(
                select(manifest_references.c.digest)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                .where(manifests.c.repository_id == repo_id, manifests.c.digest == digest,
                       manifest_references.c.kind == "manifest")).scalars())

    def save_preview(self, repository: str, text: str, status: str,
                     results: list[dict[str, Any]]) -> None:
        values = {"policy_text": text, "status": status, "results": json.dumps(results),
                  "started_at": now_us()}
        with self.database.write() as conn:
            repo_id = self._repository_id(conn, repository)
            conn.execute(self._insert(lifecycle_previews).values(repository_id=repo_id, **values)
                         .on_conflict_do_update(index_elements=["repository_id"], set_=values))

    def get_preview(self, repository: str) -> StoredPreview | None:
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            row = conn.execute(select(lifecycle_previews).where(
                lifecycle_previews.c.repository_id == repo_id)).one_or_none()
        if row is None:
            return None
        return StoredPreview(row.policy_text, row.status, json.loads(row.results))
