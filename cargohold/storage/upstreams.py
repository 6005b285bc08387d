"""Pull-through cache rules, upstream credentials and cached-tag check times, in SQL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.storage.database import Database
from cargohold.storage.metadata import now_us
from cargohold.storage.schema_upstreams import (
    cached_tag_checks,
    pull_through_rules,
    upstream_credentials,
)


class RuleExists(Exception):
    """A rule with that repository prefix exists already."""


class RuleLimitReached(Exception):
    """The registry holds the most rules it allows."""


@dataclass(frozen=True, slots=True)
class PullThroughRule:
    prefix: str
    upstream_url: str
    upstream_prefix: str | None
    upstream_registry: str | None
    credential_arn: str | None
    allow_push: bool
    created_at: int
    updated_at: int | None


@dataclass(frozen=True, slots=True)
class SealedCredential:
    name: str
    username: str
    secret_ciphertext: str


def _rule(row: object) -> PullThroughRule:
    return PullThroughRule(row.prefix, row.upstream_url, row.upstream_prefix,  # type: ignore[attr-defined]
                           row.upstream_registry, row.credential_arn,  # type: ignore[attr-defined]
                           bool(row.allow_push), row.created_at, row.updated_at)  # type: ignore[attr-defined]


class UpstreamStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- credentials -----------------------------------------------------------------------

    def put_credential(self, name: str, username: str, secret_ciphertext: str) -> None:
        now = now_us()
        with self.database.write() as conn:
            statement = self.database.insert(upstream_credentials).values(
                name=name, username=username, secret_ciphertext=secret_ciphertext,
                created_at=now, updated_at=now)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["name"], set_={"username": username,
                                               "secret_ciphertext": secret_ciphertext,
                                               "updated_at": now}))

    def get_credential(self, name: str) -> SealedCredential | None:
        with self.database.read() as conn:
            row = conn.execute(select(upstream_credentials).where(
                upstream_credentials.c.name == name)).one_or_none()
        return None if row is None else SealedCredential(row.name, row.username,
                                                         row.secret_ciphertext)

    def list_credentials(self) -> list[tuple[str, str, int]]:
        with self.database.read() as conn:
            rows = conn.execute(select(upstream_credentials.c.name,
                                       upstream_credentials.c.username,
                                       upstream_credentials.c.updated_at)
                                .order_by(upstream_credentials.c.name)).all()
        return [(row.name, row.username, row.updated_at) for row in rows]

    def delete_credential(self, name: str) -> bool:
        with self.database.write() as conn:
            return conn.execute(delete(upstream_credentials).where(
                upstream_credentials.c.name == name)).rowcount > 0

    # -- rules -----------------------------------------------------------------------------

    @staticmethod
    def _get(conn: Connection, prefix: str) -> PullThroughRule | None:
        row = conn.execute(select(pull_through_rules).where(
            pull_through_rules.c.prefix == prefix)).one_or_none()
        return None if row is None else _rule(row)

    def create_rule(self, prefix: str, upstream_url: str, upstream_prefix: str | None,
                    upstream_registry: str | None, credential_arn: str | None,
                    limit: int) -> PullThroughRule:
        try:
            with self.database.write() as conn:
                if self._get(conn, prefix) is not None:
                    raise RuleExists(prefix)
                count = conn.execute(select(func.count()).select_from(pull_through_rules)
                                     ).scalar_one()
                if count >= limit:
                    raise RuleLimitReached(prefix)
                conn.execute(insert(pull_through_rules).values(
                    prefix=prefix, upstream_url=upstream_url, upstream_prefix=upstream_prefix,
                    upstream_registry=upstream_registry, credential_arn=credential_arn,
                    allow_push=False, created_at=now_us()))
                rule = self._get(conn, prefix)
                assert rule is not None
                return rule
        except IntegrityError:
            raise RuleExists(prefix) from None

    def get_rule(self, prefix: str) -> PullThroughRule | None:
        with self.database.read() as conn:
            return self._get(conn, prefix)

    def list_rules(self, after: str | None = None,
                   limit: int | None = None) -> list[PullThroughRule]:
        query = select(pull_through_rules).order_by(pull_through_rules.c.prefix)
        if after is not None:
            query = query.where(pull_through_rules.c.prefix > after)
        if limit is not None:
            query = query.limit(limit)
        with self.database.read() as conn:
            return [_rule(row) for row in conn.execute(query)]

    def update_rule(self, prefix: str, **values: object) -> PullThroughRule | None:
        with self.database.write() as conn:
            changed = conn.execute(update(pull_through_rules)
                                   .where(pull_through_rules.c.prefix == prefix)
                                   .values(updated_at=now_us(), **values)).rowcount
            return self._get(conn, prefix) if changed else None

    def delete_rule(self, prefix: str) -> PullThroughRule | None:
        with self.database.write() as conn:
            rule = self._get(conn, prefix)
            if rule is not None:
                conn.execute(delete(pull_through_rules).where(
                    pull_through_rules.c.prefix == prefix))
            return rule

    # -- cached tags -----------------------------------------------------------------------

    def tag_checked_at(self, repository: str, tag: str) -> int | None:
        with self.database.read() as conn:
            return conn.execute(select(cached_tag_checks.c.checked_at).where(
                cached_tag_checks.c.repository == repository,
                cached_tag_checks.c.tag == tag)).scalar_one_or_none()

    def mark_tag_checked(self, repository: str, tag: str, at: int) -> None:
        with self.database.write() as conn:
            statement = self.database.insert(cached_tag_checks).values(
                repository=repository, tag=tag, checked_at=at)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["repository", "tag"], set_={"checked_at": at}))
