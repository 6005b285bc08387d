"""Repositories as ECR manages them: settings, resource tags, and deletion with their content."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.storage.database import Database
from cargohold.storage.ecr_settings import apply_creation_template
from cargohold.storage.events import Change, Outbox
from cargohold.storage.metadata import RepositoryNotFound, now_us
from cargohold.storage.schema import (
    manifests,
    repositories,
    repository_resource_tags,
    upload_sessions,
)


class RepositoryExists(Exception):
    """A repository of that name exists already."""


class RepositoryNotEmpty(Exception):
    """The repository still holds images."""


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    image_tag_mutability: str = "MUTABLE"
    exclusions: list[str] = field(default_factory=list)
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None


@dataclass(frozen=True, slots=True)
class RepositoryRecord:
    id: int
    name: str
    created_at: int
    settings: RepositorySettings


_COLUMNS = (repositories.c.id, repositories.c.name, repositories.c.created_at,
            repositories.c.image_tag_mutability, repositories.c.tag_mutability_exclusions,
            repositories.c.scan_on_push, repositories.c.encryption_type, repositories.c.kms_key)


def _record(row: object) -> RepositoryRecord:
    id_, name, created, mutability, exclusions, scan, encryption, kms = row  # type: ignore[misc]
    return RepositoryRecord(id_, name, created, RepositorySettings(
        mutability, json.loads(exclusions or "[]"), bool(scan), encryption, kms))


class RepositoryStore:
    def __init__(self, database: Database, outbox: Outbox | None = None) -> None:
        self.database = database
        self.outbox = outbox or Outbox()

    @staticmethod
    def _get(conn: Connection, name: str) -> RepositoryRecord:
        row = conn.execute(select(*_COLUMNS).where(repositories.c.name == name)).one_or_none()
        if row is None:
            raise RepositoryNotFound(name)
        return _record(row)

    def create(self, name: str, settings: RepositorySettings,
               resource_tags: dict[str, str],
               applied_for: str | None = None) -> RepositoryRecord:
        """Create a repository; with `applied_for` (PULL_THROUGH_CACHE), the matching creation
        template configures it in the same transaction."""
        try:
            with self.database.write() as conn:
                repo_id = conn.execute(insert(repositories).values(
                    name=name, created_at=now_us(),
                    image_tag_mutability=settings.image_tag_mutability,
                    tag_mutability_exclusions=json.dumps(settings.exclusions),
                    scan_on_push=settings.scan_on_push,
                    encryption_type=settings.encryption_type, kms_key=settings.kms_key,
                ).returning(repositories.c.id)).scalar_one()
                if resource_tags:
                    conn.execute(insert(repository_resource_tags), [
                        {"repository_id": repo_id, "key": k, "value": v}
                        for k, v in resource_tags.items()])
                if applied_for is not None:
                    apply_creation_template(conn, self.database.insert, repo_id, name,
                                            applied_for)
                return self._get(conn, name)
        except IntegrityError:
            raise RepositoryExists(name) from None

    def get(self, name: str) -> RepositoryRecord | None:
        with self.database.read() as conn:
            row = conn.execute(select(*_COLUMNS).where(repositories.c.name == name)
                               ).one_or_none()
        return _record(row) if row else None

    def list(self, after: str | None, limit: int) -> list[RepositoryRecord]:
        query = select(*_COLUMNS).order_by(repositories.c.name).limit(limit)
        if after is not None:
            query = query.where(repositories.c.name > after)
        with self.database.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def delete(self, name: str, *, force: bool) -> tuple[RepositoryRecord, list[str]]:
        """Delete a repository and everything in it; returns it and its open upload ids."""
        with self.database.write() as conn:
            record = self._get(conn, name)
            images = conn.execute(select(func.count()).select_from(manifests).where(
                manifests.c.repository_id == record.id)).scalar_one()
            if images and not force:
                raise RepositoryNotEmpty(name)
            uploads = list(conn.execute(select(upload_sessions.c.id).where(
                upload_sessions.c.repository_id == record.id)).scalars())
            if images:  # each manifest deleted with the repository is a delete event
                self.outbox.record(conn, [
                    Change("delete", name, row.digest, row.media_type, row.size)
                    for row in conn.execute(select(
                        manifests.c.digest, manifests.c.media_type, manifests.c.size).where(
                        manifests.c.repository_id == record.id).order_by(manifests.c.id))],
                    now_us())
            conn.execute(delete(repositories).where(repositories.c.id == record.id))
        return record, uploads

    def update_settings(self, name: str, **values: object) -> RepositoryRecord:
        columns = {"image_tag_mutability": values.get("image_tag_mutability"),
                   "tag_mutability_exclusions": (json.dumps(values["exclusions"])
                                                 if "exclusions" in values else None),
                   "scan_on_push": values.get("scan_on_push")}
        changes = {k: v for k, v in columns.items() if v is not None}
        with self.database.write() as conn:
            self._get(conn, name)
            conn.execute(update(repositories).where(repositories.c.name == name).values(**changes))
            return self._get(conn, name)

    def resource_tags(self, name: str) -> dict[str, str]:
        with self.database.read() as conn:
            record = self._get(conn, name)
            rows = conn.execute(select(repository_resource_tags.c.key,
                                       repository_resource_tags.c.value)
                                .where(repository_resource_tags.c.repository_id == record.id)
                                .order_by(repository_resource_tags.c.key)).all()
        return {row.key: row.value for row in rows}

    def tag(self, name: str, resource_tags: dict[str, str]) -> None:
        with self.database.write() as conn:
            record = self._get(conn, name)
            for key, value in resource_tags.items():
                statement = self.database.insert(repository_resource_tags).values(
                    repository_id=record.id, key=key, value=value)
                conn.execute(statement.on_conflict_do_update(
                    index_elements=["repository_id", "key"], set_={"value": value}))

    def untag(self, name: str, keys: list[str]) -> None:
        with self.database.write() as conn:
            record = self._get(conn, name)
            conn.execute(delete(repository_resource_tags).where(
                repository_resource_tags.c.repository_id == record.id,
                repository_resource_tags.c.key.in_(keys)))
