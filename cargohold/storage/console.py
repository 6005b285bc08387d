"""The web console's own table (sign-in sessions) and the read queries its pages need.

Sessions live in the database so that signing out on one worker or node ends the session on
every other: the cookie holds a random token, the table holds only its SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    and_,
    delete,
    false,
    func,
    insert,
    not_,
    or_,
    select,
)

from cargohold.storage.database import Database
from cargohold.storage.images import ImageRecord, _group
from cargohold.storage.metadata import RepositoryNotFound
from cargohold.storage.schema import (
    access_keys,
    audit_events,
    manifests,
    metadata,
    repositories,
    tags,
    users,
)

console_sessions = Table(
    "console_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    # NULL for the anonymous visitor of an open (--anonymous) registry.
    Column("user_id", Integer),
    Column("user_name", String(64)),
    Column("access_key_id", String(32)),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index(None, "expires_at"),
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    user_id: int | None
    user_name: str | None
    access_key_id: str | None
    expires_at: int


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    created_at: int
    image_count: int
    total_size: int
    last_push: int | None
    types: tuple[tuple[str, str | None], ...]  # distinct (media_type, artifact_type)


class SessionStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, token: str, user_id: int | None, user_name: str | None,
               access_key_id: str | None, now: int, expires_at: int) -> None:
        with self.database.write() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            conn.execute(insert(console_sessions).values(
                token_hash=token_hash(token), user_id=user_id, user_name=user_name,
                access_key_id=access_key_id, created_at=now, expires_at=expires_at))

    def get(self, token: str, now: int) -> SessionRecord | None:
        """The live session of a token: unexpired, its user still there and, when it signed
        in with an access key, that key still active (so deactivating a key ends it)."""
        key_active = select(access_keys.c.id).where(
            access_keys.c.id == console_sessions.c.access_key_id,
            access_keys.c.user_id == console_sessions.c.user_id,
            access_keys.c.status == "Active").exists()
        user_there = select(users.c.id).where(users.c.id == console_sessions.c.user_id).exists()
        with self.database.read() as conn:
            row = conn.execute(select(
                console_sessions.c.user_id, console_sessions.c.user_name,
                console_sessions.c.access_key_id, console_sessions.c.expires_at,
            ).where(console_sessions.c.token_hash == token_hash(token),
                    console_sessions.c.expires_at > now,
                    or_(console_sessions.c.user_id.is_(None),
                        and_(user_there, or_(console_sessions.c.access_key_id.is_(None),
                                             key_active))))).one_or_none()
        return SessionRecord(*row) if row is not None else None

    def revoke(self, token: str) -> bool:
        with self.database.write() as conn:
            return conn.execute(delete(console_sessions).where(
                console_sessions.c.token_hash == token_hash(token))).rowcount > 0


class BrowseStore:
    """Aggregates and pages for the console, all computed in SQL (never every image in memory)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def repository_summaries(self, names: list[str]) -> dict[str, RepositorySummary]:
        if not names:
            return {}
        with self.database.read() as conn:
            repos = {row.id: row for row in conn.execute(
                select(repositories.c.id, repositories.c.name, repositories.c.created_at)
                .where(repositories.c.name.in_(names)))}
            stats = {row.repository_id: row for row in conn.execute(
                select(manifests.c.repository_id, func.count().label("n"),
                       func.coalesce(func.sum(manifests.c.image_size), 0).label("size"),
                       func.max(manifests.c.pushed_at).label("last"))
                .where(manifests.c.repository_id.in_(list(repos)))
                .group_by(manifests.c.repository_id))}
            kinds: dict[int, list[tuple[str, str | None]]] = {}
            for row in conn.execute(
                    select(manifests.c.repository_id, manifests.c.media_type,
                           manifests.c.artifact_type).distinct()
                    .where(manifests.c.repository_id.in_(list(repos)))):
                kinds.setdefault(row.repository_id, []).append(
                    (row.media_type, row.artifact_type))
        result = {}
        for repo_id, repo in repos.items():
            stat = stats.get(repo_id)
            result[repo.name] = RepositorySummary(
                repo.name, repo.created_at, stat.n if stat else 0,
                int(stat.size) if stat else 0, stat.last if stat else None,
                tuple(kinds.get(repo_id, ())))
        return result

    def image_page(self, repository: str, *, offset: int, limit: int, newest_first: bool,
                   tag_status: str, kind_filter: ColumnElement[bool] | None,
                   tag_prefix: str | None) -> tuple[list[ImageRecord], int]:
        """One page of a repository's images (in push order) and how many match in all."""
        with self.database.read() as conn:
            repo_id = conn.execute(select(repositories.c.id).where(
                repositories.c.name == repository)).scalar_one_or_none()
            if repo_id is None:
                raise RepositoryNotFound(repository)
            tagged = select(tags.c.manifest_id).where(tags.c.manifest_id == manifests.c.id)
            conditions: list[ColumnElement[bool]] = [manifests.c.repository_id == repo_id]
            if tag_status == "TAGGED":
                conditions.append(tagged.exists())
            elif tag_status == "UNTAGGED":
                conditions.append(not_(tagged.exists()))
            if kind_filter is not None:
                conditions.append(kind_filter)
            if tag_prefix:
                escaped = (tag_prefix.replace("\\", "\\\\").replace("%", "\\%")
                           .replace("_", "\\_"))
                conditions.append(tagged.where(
                    tags.c.name.like(f"%{escaped}%", escape="\\")).exists())
            where = and_(*conditions)
            total = int(conn.execute(select(func.count()).select_from(manifests).where(where)
                                     ).scalar_one())
            order = manifests.c.id.desc() if newest_first else manifests.c.id.asc()
            page = (select(manifests.c.id, manifests.c.digest, manifests.c.media_type,
                           manifests.c.artifact_type, manifests.c.config_media_type,
                           manifests.c.image_size, manifests.c.pushed_at,
                           manifests.c.last_pulled_at, manifests.c.subject_digest)
                    .where(where).order_by(order).limit(limit).offset(offset).cte("page"))
            rows = conn.execute(
                select(page, tags.c.name.label("tag"))
                .outerjoin(tags, tags.c.manifest_id == page.c.id)
                .order_by(page.c.id.desc() if newest_first else page.c.id, tags.c.name)).all()
        return _group(rows), total

    def referrer_counts(self, repository: str, subjects: list[str]) -> dict[str, int]:
        if not subjects:
            return {}
        with self.database.read() as conn:
            rows = conn.execute(
                select(manifests.c.subject_digest, func.count())
                .join(repositories, repositories.c.id == manifests.c.repository_id)
                .where(repositories.c.name == repository,
                       manifests.c.subject_digest.in_(subjects))
                .group_by(manifests.c.subject_digest)).all()
        return {row[0]: int(row[1]) for row in rows}

    def search_tags(self, repository_names: list[str], text: str, limit: int
                    ) -> list[tuple[str, str]]:
        """(repository, tag) pairs whose tag contains `text`, among the given repositories."""
        if not repository_names or not text:
            return []
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.database.read() as conn:
            rows = conn.execute(
                select(repositories.c.name, tags.c.name)
                .join(repositories, repositories.c.id == tags.c.repository_id)
                .where(repositories.c.name.in_(repository_names),
                       tags.c.name.like(f"%{escaped}%", escape="\\"))
                .order_by(repositories.c.name, tags.c.name).limit(limit)).all()
        return [(row[0], row[1]) for row in rows]

    def audit(self, *, principal: str | None, action: str | None, repository: str | None,
              limit: int) -> list[dict[str, Any]]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if principal:
            query = query.where(audit_events.c.principal == principal)
        if action:
            query = query.where(audit_events.c.action == action)
        if repository:
            query = query.where(audit_events.c.repository == repository)
        with self.database.read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def in_set(column: Any, values: frozenset[str], prefixes: tuple[str, ...]
           ) -> ColumnElement[bool]:
    """SQL for "column is one of values or starts with one of prefixes"."""
    parts: list[ColumnElement[bool]] = []
    if values:
        parts.append(column.in_(sorted(values)))
    parts.extend(column.like(prefix.replace("%", "").replace("_", "\\_") + "%", escape="\\")
                 for prefix in prefixes)
    return or_(*parts) if parts else false()

