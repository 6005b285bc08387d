"""Registry-wide ECR settings in the metadata DB: account settings, the registry policy, and
repository creation templates (with their application to repositories a push creates)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.storage.database import Database
from cargohold.storage.schema import repositories, repository_policies, repository_resource_tags
from cargohold.storage.schema_ecr_settings import (
    account_settings,
    registry_policy,
    repository_creation_templates,
)
from cargohold.storage.schema_retention import lifecycle_policies

ROOT_PREFIX = "ROOT"
CREATE_ON_PUSH = "CREATE_ON_PUSH"
PULL_THROUGH_CACHE = "PULL_THROUGH_CACHE"
_POLICY_ROW = 1


def _now_us() -> int:
    return time.time_ns() // 1000


class TemplateExists(Exception):
    """A template for that prefix exists already."""


class TemplateNotFound(Exception):
    """No template for that prefix."""


class TooManyTemplates(Exception):
    """The registry holds its maximum number of templates."""


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    prefix: str
    applied_for: list[str]
    description: str | None = None
    encryption_type: str = "AES256"
    kms_key: str | None = None
    resource_tags: dict[str, str] = field(default_factory=dict)
    image_tag_mutability: str = "MUTABLE"
    exclusions: list[str] = field(default_factory=list)
    repository_policy: str | None = None
    lifecycle_policy: str | None = None
    custom_role_arn: str | None = None
    created_at: int = 0
    updated_at: int = 0


_T = repository_creation_templates


def _columns(record: TemplateRecord) -> dict[str, Any]:
    return {
        "description": record.description, "encryption_type": record.encryption_type,
        "kms_key": record.kms_key, "resource_tags": json.dumps(record.resource_tags),
        "image_tag_mutability": record.image_tag_mutability,
        "tag_mutability_exclusions": json.dumps(record.exclusions),
        "repository_policy": record.repository_policy,
        "lifecycle_policy": record.lifecycle_policy,
        "applied_for": json.dumps(record.applied_for),
        "custom_role_arn": record.custom_role_arn,
    }


def _template(row: Any) -> TemplateRecord:
    return TemplateRecord(
        prefix=row.prefix, applied_for=json.loads(row.applied_for),
        description=row.description, encryption_type=row.encryption_type, kms_key=row.kms_key,
        resource_tags=json.loads(row.resource_tags), image_tag_mutability=row.image_tag_mutability,
        exclusions=json.loads(row.tag_mutability_exclusions),
        repository_policy=row.repository_policy, lifecycle_policy=row.lifecycle_policy,
        custom_role_arn=row.custom_role_arn, created_at=row.created_at,
        updated_at=row.updated_at)


def namespace_prefixes(name: str) -> list[str]:
    """The template prefixes that cover a repository name, longest first ("a/b/c": a/b, a)."""
    parts = name.split("/")
    return ["/".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


def matching_template(conn: Connection, name: str, scenario: str) -> TemplateRecord | None:
    """The template for a new repository: the longest prefix applied for `scenario`, else
    the ROOT template (when it is applied for it)."""
    candidates = [*namespace_prefixes(name), ROOT_PREFIX]
    rows = conn.execute(select(_T).where(_T.c.prefix.in_(candidates))).all()
    templates = {row.prefix: _template(row) for row in rows}
    for prefix in candidates:
        template = templates.get(prefix)
        if template is not None and scenario in template.applied_for:
            return template
    return None


def apply_creation_template(conn: Connection, upsert: Callable[[Table], Any], repo_id: int,
                            name: str, applied_for: str = CREATE_ON_PUSH) -> None:
    """Give a repository that a push (or the pull-through cache: PULL_THROUGH_CACHE) just
    created its template's settings, in the creating transaction (it is created configured,
    or not at all)."""
    template = matching_template(conn, name, applied_for)
    if template is None:
        return
    conn.execute(update(repositories).where(repositories.c.id == repo_id).values(
        image_tag_mutability=template.image_tag_mutability,
        tag_mutability_exclusions=json.dumps(template.exclusions),
        encryption_type=template.encryption_type, kms_key=template.kms_key))
    if template.resource_tags:
        conn.execute(insert(repository_resource_tags), [
            {"repository_id": repo_id, "key": key, "value": value}
            for key, value in template.resource_tags.items()])
    if template.repository_policy:
        conn.execute(upsert(repository_policies).values(
            repository_id=repo_id, document=template.repository_policy, updated_at=_now_us()
        ).on_conflict_do_nothing(index_elements=["repository_id"]))
    if template.lifecycle_policy:
        conn.execute(upsert(lifecycle_policies).values(
            repository_id=repo_id, policy_text=template.lifecycle_policy, updated_at=_now_us()
        ).on_conflict_do_nothing(index_elements=["repository_id"]))


class EcrSettingsStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- account settings --------------------------------------------------------------------

    def account_setting(self, name: str) -> str | None:
        with self.database.read() as conn:
            return conn.execute(select(account_settings.c.value)
                                .where(account_settings.c.name == name)).scalar_one_or_none()

    def put_account_setting(self, name: str, value: str) -> None:
        now = _now_us()
        with self.database.write() as conn:
            statement = self.database.insert(account_settings).values(
                name=name, value=value, updated_at=now)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["name"], set_={"value": value, "updated_at": now}))

    # -- the registry policy -----------------------------------------------------------------

    def registry_policy(self) -> str | None:
        with self.database.read() as conn:
            return conn.execute(select(registry_policy.c.document)
                                .where(registry_policy.c.id == _POLICY_ROW)).scalar_one_or_none()

    def put_registry_policy(self, document: str) -> None:
        now = _now_us()
        with self.database.write() as conn:
            statement = self.database.insert(registry_policy).values(
                id=_POLICY_ROW, document=document, updated_at=now)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["id"], set_={"document": document, "updated_at": now}))

    def delete_registry_policy(self) -> str | None:
        """Remove the policy; returns the text it had (None: there was none)."""
        with self.database.write() as conn:
            document = conn.execute(select(registry_policy.c.document)
                                    .where(registry_policy.c.id == _POLICY_ROW)
                                    ).scalar_one_or_none()
            if document is not None:
                conn.execute(delete(registry_policy).where(registry_policy.c.id == _POLICY_ROW))
            return document

    # -- repository creation templates ---------------------------------------------------------

    @staticmethod
    def _get(conn: Connection, prefix: str) -> TemplateRecord:
        row = conn.execute(select(_T).where(_T.c.prefix == prefix)).one_or_none()
        if row is None:
            raise TemplateNotFound(prefix)
        return _template(row)

    def create_template(self, record: TemplateRecord, limit: int) -> TemplateRecord:
        now = _now_us()
        try:
            with self.database.write() as conn:
                count = conn.execute(select(func.count()).select_from(_T)).scalar_one()
                if conn.execute(select(_T.c.prefix).where(_T.c.prefix == record.prefix)
                                ).scalar_one_or_none() is not None:
                    raise TemplateExists(record.prefix)
                if count >= limit:
                    raise TooManyTemplates(record.prefix)
                conn.execute(insert(_T).values(prefix=record.prefix, created_at=now,
                                               updated_at=now, **_columns(record)))
                return self._get(conn, record.prefix)
        except IntegrityError:
            raise TemplateExists(record.prefix) from None

    def template(self, prefix: str) -> TemplateRecord | None:
        with self.database.read() as conn:
            try:
                return self._get(conn, prefix)
            except TemplateNotFound:
                return None

    def templates(self, prefixes: list[str] | None, after: str | None,
                  limit: int | None) -> list[TemplateRecord]:
        query = select(_T).order_by(_T.c.prefix)
        if prefixes is not None:
            query = query.where(_T.c.prefix.in_(prefixes))
        if after is not None:
            query = query.where(_T.c.prefix > after)
        if limit is not None:
            query = query.limit(limit)
        with self.database.read() as conn:
            return [_template(row) for row in conn.execute(query)]

    def update_template(self, prefix: str,
                        change: Callable[[TemplateRecord], TemplateRecord]) -> TemplateRecord:
        """Read, change (the callable may raise to refuse) and write back, in one transaction."""
        with self.database.write() as conn:
            updated = change(self._get(conn, prefix))
            conn.execute(update(_T).where(_T.c.prefix == prefix)
                         .values(updated_at=_now_us(), **_columns(updated)))
            return self._get(conn, prefix)

    def delete_template(self, prefix: str) -> TemplateRecord:
        with self.database.write() as conn:
            record = self._get(conn, prefix)
            conn.execute(delete(_T).where(_T.c.prefix == prefix))
            return record
