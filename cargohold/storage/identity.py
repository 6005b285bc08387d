"""The identity store: users, access keys, policies and the audit log, in the metadata DB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.storage.database import Database
from cargohold.storage.metadata import RepositoryNotFound, now_us
from cargohold.storage.schema import (
    access_keys,
    audit_events,
    repositories,
    repository_policies,
    user_policies,
    users,
)
from cargohold.storage.sql import Prepared

_INSERT_AUDIT = Prepared(insert(audit_events).values(
    {column: bindparam(column) for column in ("at", "principal", "access_key_id", "action",
                                              "repository", "outcome", "status", "remote",
                                              "detail", "request_id")}))


class UserExists(Exception):
    """A user of that name exists already."""


class UserNotFound(Exception):
    """No user of that name."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class AccessKeyRecord:
    id: str
    user_id: int
    user_name: str
    status: str
    created_at: int
    secret_ciphertext: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: int
    principal: str | None
    access_key_id: str | None
    action: str
    repository: str | None
    outcome: str
    status: int | None
    remote: str | None
    detail: str | None = None
    request_id: str | None = None


_KEY_COLUMNS = (access_keys.c.id, access_keys.c.user_id, users.c.name, access_keys.c.status,
                access_keys.c.created_at, access_keys.c.secret_ciphertext)


_KEYS = select(*_KEY_COLUMNS).join(users, users.c.id == access_keys.c.user_id)


def _key(row: object) -> AccessKeyRecord:
    id_, user_id, name, status, created_at, ciphertext = row  # type: ignore[misc]
    return AccessKeyRecord(id_, user_id, name, status, created_at, ciphertext)


class IdentityStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- users -----------------------------------------------------------------------------

    def create_user(self, name: str, password_hash: str | None = None) -> UserRecord:
        now = now_us()
        try:
            with self.database.write() as conn:
                user_id = conn.execute(insert(users).values(
                    name=name, password_hash=password_hash, created_at=now
                ).returning(users.c.id)).scalar_one()
        except IntegrityError:
            raise UserExists(name) from None
        return UserRecord(user_id, name, now)

    def password_hash(self, name: str) -> tuple[UserRecord, str] | None:
        with self.database.read() as conn:
            row = conn.execute(select(users.c.id, users.c.name, users.c.created_at,
                                      users.c.password_hash)
                               .where(users.c.name == name)).one_or_none()
        if row is None or row.password_hash is None:
            return None
        return UserRecord(row.id, row.name, row.created_at), row.password_hash

    def list_users(self) -> list[UserRecord]:
        with self.database.read() as conn:
            rows = conn.execute(select(users.c.id, users.c.name, users.c.created_at)
                                .order_by(users.c.name)).all()
        return [UserRecord(*row) for row in rows]

    def count_users(self) -> int:
        with self.database.read() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def user_exists(self, user_id: int) -> bool:
        """Whether a token minted for a user signed in by password still has its user."""
        with self.database.read() as conn:
            return conn.execute(select(users.c.id).where(users.c.id == user_id)
                                ).first() is not None

    def delete_user(self, name: str) -> bool:
        with self.database.write() as conn:
            return conn.execute(delete(users).where(users.c.name == name)).rowcount > 0

    # -- access keys -----------------------------------------------------------------------

    def create_access_key(self, user_name: str, key_id: str,
                          secret_ciphertext: str) -> AccessKeyRecord:
        now = now_us()
        with self.database.write() as conn:
            user_id = conn.execute(select(users.c.id).where(users.c.name == user_name)
                                   ).scalar_one_or_none()
            if user_id is None:
                raise UserNotFound(user_name)
            conn.execute(insert(access_keys).values(
                id=key_id, user_id=user_id, secret_ciphertext=secret_ciphertext,
                status="Active", created_at=now))
        return AccessKeyRecord(key_id, user_id, user_name, "Active", now, secret_ciphertext)

    def get_access_key(self, key_id: str) -> AccessKeyRecord | None:
        with self.database.read() as conn:
            row = conn.execute(_KEYS.where(access_keys.c.id == key_id)).one_or_none()
        return _key(row) if row else None

    def list_access_keys(self, user_name: str | None = None) -> list[AccessKeyRecord]:
        query = _KEYS
        if user_name is not None:
            query = query.where(users.c.name == user_name)
        with self.database.read() as conn:
            rows = conn.execute(query.order_by(users.c.name, access_keys.c.created_at)).all()
        return [_key(row) for row in rows]

    def set_access_key_status(self, key_id: str, status: str) -> bool:
        with self.database.write() as conn:
            return conn.execute(update(access_keys).where(access_keys.c.id == key_id)
                                .values(status=status)).rowcount > 0

    def delete_access_key(self, key_id: str) -> bool:
        with self.database.write() as conn:
            return conn.execute(delete(access_keys).where(access_keys.c.id == key_id)
                                ).rowcount > 0

    # -- policies --------------------------------------------------------------------------

    def put_user_policy(self, user_name: str, name: str, document: str) -> None:
        with self.database.write() as conn:
            user_id = conn.execute(select(users.c.id).where(users.c.name == user_name)
                                   ).scalar_one_or_none()
            if user_id is None:
                raise UserNotFound(user_name)
            statement = self.database.insert(user_policies).values(
                user_id=user_id, name=name, document=document)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["user_id", "name"], set_={"document": document}))

    def delete_user_policy(self, user_name: str, name: str) -> bool:
        with self.database.write() as conn:
            user_id = conn.execute(select(users.c.id).where(users.c.name == user_name)
                                   ).scalar_one_or_none()
            if user_id is None:
                raise UserNotFound(user_name)
            return conn.execute(delete(user_policies).where(
                user_policies.c.user_id == user_id, user_policies.c.name == name)).rowcount > 0

    def list_user_policies(self, user_name: str) -> dict[str, str]:
        with self.database.read() as conn:
            rows = conn.execute(
                select(user_policies.c.name, user_policies.c.document)
                .join(users, users.c.id == user_policies.c.user_id)
                .where(users.c.name == user_name).order_by(user_policies.c.name)).all()
        return {row.name: row.document for row in rows}

    def policies_for(self, user_id: int | None,
                     repository: str | None) -> tuple[list[str], str | None]:
        """The identity policies of a user and the policy of a repository, in one read."""
        with self.database.read() as conn:
            identity: list[str] = []
            if user_id is not None:
                identity = list(conn.execute(select(user_policies.c.document)
                                             .where(user_policies.c.user_id == user_id)
                                             ).scalars())
            resource = None
            if repository is not None:
                resource = conn.execute(
                    select(repository_policies.c.document)
                    .join(repositories, repositories.c.id == repository_policies.c.repository_id)
                    .where(repositories.c.name == repository)).scalar_one_or_none()
        return identity, resource

    def repository_policies(self, names: Sequence[str]) -> dict[str, str]:
        if not names:
            return {}
        with self.database.read() as conn:
            rows = conn.execute(
                select(repositories.c.name, repository_policies.c.document)
                .join(repositories, repositories.c.id == repository_policies.c.repository_id)
                .where(repositories.c.name.in_(list(names)))).all()
        return {row.name: row.document for row in rows}

    def get_repository_policy(self, repository: str) -> str | None:
        return self.policies_for(None, repository)[1]

    def set_repository_policy(self, repository: str, document: str) -> None:
        with self.database.write() as conn:
            repo_id = conn.execute(select(repositories.c.id)
                                   .where(repositories.c.name == repository)).scalar_one_or_none()
            if repo_id is None:
                raise RepositoryNotFound(repository)
            now = now_us()
            statement = self.database.insert(repository_policies).values(
                repository_id=repo_id, document=document, updated_at=now)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["repository_id"], set_={"document": document, "updated_at": now}))

    def delete_repository_policy(self, repository: str) -> bool:
        with self.database.write() as conn:
            repo_id = conn.execute(select(repositories.c.id)
                                   .where(repositories.c.name == repository)).scalar_one_or_none()
            if repo_id is None:
                raise RepositoryNotFound(repository)
            return conn.execute(delete(repository_policies).where(
                repository_policies.c.repository_id == repo_id)).rowcount > 0

    # -- audit log -------------------------------------------------------------------------

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = [{"at": e.at, "principal": e.principal, "access_key_id": e.access_key_id,
                 "action": e.action, "repository": e.repository, "outcome": e.outcome,
                 "status": e.status, "remote": e.remote, "detail": e.detail,
                 "request_id": e.request_id} for e in events]
        self.database.transaction(lambda tx: tx.many(_INSERT_AUDIT, rows))

    def query_audit(self, *, limit: int = 100, principal: str | None = None,
                    repository: str | None = None, outcome: str | None = None,
                    since: int | None = None,
                    request_id: str | None = None) -> list[AuditEvent]:
        query = select(audit_events.c.at, audit_events.c.principal, audit_events.c.access_key_id,
                       audit_events.c.action, audit_events.c.repository, audit_events.c.outcome,
                       audit_events.c.status, audit_events.c.remote, audit_events.c.detail,
                       audit_events.c.request_id)
        if principal is not None:
            query = query.where(audit_events.c.principal == principal)
        if repository is not None:
            query = query.where(audit_events.c.repository == repository)
        if outcome is not None:
            query = query.where(audit_events.c.outcome == outcome)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if request_id is not None:
            query = query.where(audit_events.c.request_id == request_id)
        query = query.order_by(audit_events.c.id.desc()).limit(limit)
        with self.database.read() as conn:
            rows = conn.execute(query).all()
        return [AuditEvent(*row) for row in rows]
