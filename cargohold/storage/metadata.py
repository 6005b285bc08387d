"""The metadata store: every read and write of registry metadata, one transaction per method."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from cargohold.storage.database import Database
from cargohold.storage.ecr_settings import CREATE_ON_PUSH, apply_creation_template
from cargohold.storage.events import Change, Outbox
from cargohold.storage.schema import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
    upload_sessions,
)
from cargohold.wire.mutability import tag_is_immutable


def now_us() -> int:
    return time.time_ns() // 1000


class RepositoryNotFound(Exception):
    """The repository does not exist and may not be created by this operation."""


class MissingReferences(Exception):
    """A manifest names blobs or child manifests that the repository does not hold."""

    def __init__(self, blobs: Sequence[str], manifests: Sequence[str]) -> None:
        super().__init__(", ".join([*blobs, *manifests]))
        self.blobs = list(blobs)
        self.manifests = list(manifests)


class DescriptorMismatch(Exception):
    """A descriptor declares a size (or, for a manifest, a media type) other than that of the
    stored content it names."""

    def __init__(self, where: str, digest: str, field: str, declared: int | str,
                 stored: int | str) -> None:
        super().__init__(f"{where}: {digest} declares {field} {declared!r}, stored {stored!r}")
        self.where = where
        self.digest = digest
        self.field = field
        self.declared = declared
        self.stored = stored


class TagImmutable(Exception):
    """The repository's tag mutability forbids moving this existing tag."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


@dataclass(frozen=True, slots=True)
class ManifestPut:
    """What a manifest push changed: a new manifest row, and which tags now point at it."""

    created: bool
    moved_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    content: bytes


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class DeclaredReference:
    """A descriptor of a manifest that names stored content: where it is, and what it claims.

    kind "blob" names a blob of the repository, "manifest" a manifest of it. A "manifest"
    reference that is not stored and not in `child_digests` (a subject) is not required.
    """

    where: str
    kind: str
    digest: str
    size: int
    media_type: str | None = None  # checked against a stored manifest's media type


@dataclass(frozen=True, slots=True)
class NewManifest:
    """A validated manifest ready to be recorded."""

    digest: str
    media_type: str
    content: bytes
    artifact_type: str | None
    config_media_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None
    blob_digests: frozenset[str]
    child_digests: frozenset[str]
    declared: tuple[DeclaredReference, ...] = ()


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    repository: str
    algorithm: str
    size: int
    last_chunk_size: int
    undersized_part: bool
    created_at: int


# Hot-path reads, built once: constructing a statement costs more than running it.
_MANIFEST_COLUMNS = (manifests.c.digest, manifests.c.media_type, manifests.c.size,
                     manifests.c.content)
_MANIFEST_BY_DIGEST = (
    select(*_MANIFEST_COLUMNS)
    .join(repositories, repositories.c.id == manifests.c.repository_id)
    .where(repositories.c.name == bindparam("repository"),
           manifests.c.digest == bindparam("digest"))
)
_MANIFEST_BY_TAG = (
    select(*_MANIFEST_COLUMNS)
    .join(repositories, repositories.c.id == manifests.c.repository_id)
    .join(tags, tags.c.manifest_id == manifests.c.id)
    .where(repositories.c.name == bindparam("repository"), tags.c.name == bindparam("tag"))
)
_BLOB_SIZE = (
    select(blobs.c.size)
    .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
    .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
    .where(repositories.c.name == bindparam("repository"), blobs.c.digest == bindparam("digest"))
)
_REPOSITORY_ID = select(repositories.c.id).where(repositories.c.name == bindparam("name"))


class MetadataStore:
    """Registry metadata in a SQL database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert
        self._read = database.read
        self._write = database.write
        # Events go to the outbox in the same transaction as the change they report.
        self.outbox = Outbox()

    # -- repositories --------------------------------------------------------------------

    @staticmethod
    def _repository_id(conn: Connection, name: str) -> int | None:
        return conn.execute(_REPOSITORY_ID, {"name": name}).scalar_one_or_none()

    def _ensure_repository(self, conn: Connection, name: str, create: bool,
                           applied_for: str = CREATE_ON_PUSH) -> int:
        repo_id = self._repository_id(conn, name)
        if repo_id is not None:
            return repo_id
        if not create:
            raise RepositoryNotFound(name)
        created = conn.execute(self._insert(repositories)
                               .values(name=name, created_at=now_us())
                               .on_conflict_do_nothing(index_elements=["name"])
                               .returning(repositories.c.id)).scalar_one_or_none()
        if created is not None:
            # Created by a push: its creation template (if any) configures it right here.
            apply_creation_template(conn, self._insert, created, name, applied_for)
            return int(created)
        repo_id = self._repository_id(conn, name)
        assert repo_id is not None
        return repo_id

    def list_repositories(self, last: str | None, limit: int | None) -> list[str]:
        query = select(repositories.c.name).order_by(repositories.c.name)
        if last:
            query = query.where(repositories.c.name > last)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # -- blobs ---------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob linked into the repository, None when it is not visible there."""
        with self._read() as conn:
            return conn.execute(_BLOB_SIZE, {"repository": repository, "digest": digest}
                                ).scalar_one_or_none()

    def _link_blob(self, conn: Connection, repo_id: int, digest: str, size: int) -> None:
        now = now_us()
        conn.execute(self._insert(blobs).values(digest=digest, size=size, created_at=now)
                     .on_conflict_do_nothing(index_elements=["digest"]))
        # A fresh link restarts the garbage-collection grace period of an unreferenced blob.
        conn.execute(self._insert(repository_blobs)
                     .values(repository_id=repo_id, digest=digest, linked_at=now)
                     .on_conflict_do_update(index_elements=["repository_id", "digest"],
                                            set_={"linked_at": now}))

    def link_blob(self, repository: str, digest: str, size: int, *, create: bool) -> None:
        with self._write() as conn:
            self._link_blob(conn, self._ensure_repository(conn, repository, create), digest, size)

    def mount_blob(self, repository: str, source: str, digest: str, *, create: bool) -> bool:
        """Link a blob that `source` holds into `repository`; False when source lacks it."""
        with self._write() as conn:
            # FOR SHARE of the source's link: garbage collection cannot unlink (and so delete)
            # the blob while this transaction links it elsewhere.
            size = conn.execute(_BLOB_SIZE.with_for_update(read=True, of=repository_blobs),
                                {"repository": source, "digest": digest}).scalar_one_or_none()
            if size is None:
                return False
            self._link_blob(conn, self._ensure_repository(conn, repository, create), digest, size)
            return True

    def unlink_blob(self, repository: str, digest: str) -> bool:
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            result = conn.execute(delete(repository_blobs).where(
                repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest == digest))
            return result.rowcount > 0

    # -- upload sessions -----------------------------------------------------------------

    def create_upload(self, repository: str, upload_id: str, algorithm: str, *,
                      create: bool) -> None:
        with self._write() as conn:
            repo_id = self._ensure_repository(conn, repository, create)
            now = now_us()
            conn.execute(insert(upload_sessions).values(
                id=upload_id, repository_id=repo_id, algorithm=algorithm, size=0,
                created_at=now, updated_at=now))

    def get_upload(self, repository: str, upload_id: str) -> UploadRecord | None:
        query = (
            select(upload_sessions.c.id, upload_sessions.c.algorithm, upload_sessions.c.size,
                   upload_sessions.c.last_chunk_size, upload_sessions.c.undersized_part,
                   upload_sessions.c.created_at)
            .join(repositories, repositories.c.id == upload_sessions.c.repository_id)
            .where(upload_sessions.c.id == upload_id, repositories.c.name == repository)
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        return UploadRecord(row.id, repository, row.algorithm, row.size, row.last_chunk_size,
                            bool(row.undersized_part), row.created_at)

    def record_upload_size(self, upload_id: str, old_size: int, new_size: int) -> bool:
        """Acknowledge a chunk: move the session from old_size to new_size, if still there."""
        with self._write() as conn:
            result = conn.execute(update(upload_sessions).where(
                upload_sessions.c.id == upload_id, upload_sessions.c.size == old_size,
            ).values(size=new_size, last_chunk_size=new_size - old_size, updated_at=now_us()))
            return result.rowcount > 0

    def remove_stale_uploads(self, idle_since: int) -> list[str]:
        """Forget upload sessions untouched since `idle_since` (µs); returns their ids."""
        with self._write() as conn:
            stale = list(conn.execute(select(upload_sessions.c.id).where(
                upload_sessions.c.updated_at < idle_since)).scalars())
            if stale:
                conn.execute(delete(upload_sessions).where(upload_sessions.c.id.in_(stale)))
        return stale

    def known_uploads(self, upload_ids: Sequence[str]) -> set[str]:
        if not upload_ids:
            return set()
        with self._read() as conn:
            return set(conn.execute(select(upload_sessions.c.id).where(
                upload_sessions.c.id.in_(list(upload_ids)))).scalars())

    def mark_undersized_part(self, upload_id: str) -> None:
        """Remember that a part other than the last was below ECR's minimum part size."""
        with self._write() as conn:
            conn.execute(update(upload_sessions).where(upload_sessions.c.id == upload_id)
                         .values(undersized_part=True))

    def complete_upload(self, repository: str, upload_id: str, digest: str, size: int) -> bool:
        """Close a session and link its blob in one transaction; False if the session is gone."""
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            removed = conn.execute(delete(upload_sessions).where(
                upload_sessions.c.id == upload_id, upload_sessions.c.repository_id == repo_id))
            if removed.rowcount == 0:
                return False
            self._link_blob(conn, repo_id, digest, size)
            return True

    def delete_upload(self, repository: str, upload_id: str) -> bool:
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            result = conn.execute(delete(upload_sessions).where(
                upload_sessions.c.id == upload_id, upload_sessions.c.repository_id == repo_id))
            return result.rowcount > 0

    # -- manifests and tags --------------------------------------------------------------

    def get_manifest(self, repository: str, *, digest: str | None = None,
                     tag: str | None = None) -> ManifestRecord | None:
        if tag is not None:
            statement, params = _MANIFEST_BY_TAG, {"repository": repository, "tag": tag}
        else:
            statement, params = _MANIFEST_BY_DIGEST, {"repository": repository, "digest": digest}
        with self._read() as conn:
            row = conn.execute(statement, params).one_or_none()
        if row is None:
            return None
        return ManifestRecord(row.digest, row.media_type, row.size, bytes(row.content))

    @staticmethod
    def _check_references(conn: Connection, repo_id: int, manifest: NewManifest) -> None:
        """Refuse a manifest naming content the repository lacks (MissingReferences) or
        describing it otherwise than stored (DescriptorMismatch).

        The rows read are locked FOR SHARE (PostgreSQL; SQLite serialises writers), in one
        order with garbage collection, so GC cannot unlink what this manifest is about to
        reference until this transaction ends, and the two never deadlock."""
        blob_sizes: dict[str, int] = {}
        wanted_blobs = set(manifest.blob_digests) | {
            ref.digest for ref in manifest.declared if ref.kind == "blob"}
        if wanted_blobs:
            blob_sizes = dict(conn.execute(
                select(blobs.c.digest, blobs.c.size)
                .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
                .where(repository_blobs.c.repository_id == repo_id,
                       blobs.c.digest.in_(wanted_blobs))
                .order_by(repository_blobs.c.digest)
                .with_for_update(read=True, of=repository_blobs)).all())
        stored_manifests: dict[str, tuple[int, str]] = {}
        wanted_manifests = set(manifest.child_digests) | {
            ref.digest for ref in manifest.declared if ref.kind == "manifest"}
        if wanted_manifests:
            stored_manifests = {row.digest: (row.size, row.media_type) for row in conn.execute(
                select(manifests.c.digest, manifests.c.size, manifests.c.media_type).where(
                    manifests.c.repository_id == repo_id,
                    manifests.c.digest.in_(wanted_manifests))
                .order_by(manifests.c.id)
                .with_for_update(read=True))}
        missing_blobs = set(manifest.blob_digests) - blob_sizes.keys()
        missing_children = set(manifest.child_digests) - stored_manifests.keys()
        if missing_blobs or missing_children:
            raise MissingReferences(sorted(missing_blobs), sorted(missing_children))
        for ref in manifest.declared:
            if ref.kind == "blob":
                size, media_type = blob_sizes.get(ref.digest), None
            else:
                size, media_type = stored_manifests.get(ref.digest, (None, None))
            if size is not None and size != ref.size:
                raise DescriptorMismatch(ref.where, ref.digest, "size", ref.size, size)
            if media_type is not None and ref.media_type and media_type != ref.media_type:
                raise DescriptorMismatch(ref.where, ref.digest, "mediaType", ref.media_type,
                                         media_type)

    def put_manifest(self, repository: str, manifest: NewManifest, tag_names: Sequence[str], *,
                     create: bool, require_references: bool = True,
                     applied_for: str = CREATE_ON_PUSH) -> ManifestPut:
        """Record a manifest and point tags at it, atomically; refuse dangling references,
        descriptors whose size disagrees with the stored content, and moves of immutable tags
        (a pull-through cache, which stores what it fetches on demand and whose content the
        upstream's digest vouches for, skips the reference checks). A refusal rolls the whole
        transaction back, a repository created on push included."""
        with self._write() as conn:
            repo_id = self._ensure_repository(conn, repository, create, applied_for)
            if require_references:
                self._check_references(conn, repo_id, manifest)
            now = now_us()
            manifest_id = self._manifest_id(conn, repo_id, manifest.digest)
            created = manifest_id is None
            if manifest_id is None:
                manifest_id = self._insert_manifest(conn, repo_id, manifest, now)
            moved = []
            for name in tag_names:
                current = conn.execute(select(tags.c.manifest_id).where(
                    tags.c.repository_id == repo_id, tags.c.name == name)).scalar_one_or_none()
                if current == manifest_id:
                    continue
                if current is not None and self._immutable(conn, repo_id, name):
                    raise TagImmutable(name)
                statement = self._insert(tags).values(
                    repository_id=repo_id, name=name, manifest_id=manifest_id, updated_at=now)
                conn.execute(statement.on_conflict_do_update(
                    index_elements=["repository_id", "name"],
                    set_={"manifest_id": manifest_id, "updated_at": now}))
                moved.append(name)
            self.outbox.record(conn, _push_changes(repository, manifest, created, moved), now)
            return ManifestPut(created, tuple(moved))

    @staticmethod
    def _immutable(conn: Connection, repo_id: int, tag: str) -> bool:
        row = conn.execute(select(repositories.c.image_tag_mutability,
                                  repositories.c.tag_mutability_exclusions)
                           .where(repositories.c.id == repo_id)).one()
        exclusions = json.loads(row.tag_mutability_exclusions or "[]")
        return tag_is_immutable(row.image_tag_mutability, exclusions, tag)

    @staticmethod
    def _manifest_id(conn: Connection, repo_id: int, digest: str) -> int | None:
        return conn.execute(select(manifests.c.id).where(
            manifests.c.repository_id == repo_id, manifests.c.digest == digest)
        ).scalar_one_or_none()

    @staticmethod
    def _image_size(conn: Connection, repo_id: int, manifest: NewManifest) -> int:
        """Manifest + config + layers; for an index, its largest child (as ECR reports)."""
        if manifest.child_digests:
            largest = conn.execute(select(func.max(manifests.c.image_size)).where(
                manifests.c.repository_id == repo_id,
                manifests.c.digest.in_(manifest.child_digests))).scalar_one_or_none()
            return int(largest or 0)
        layers = 0
        if manifest.blob_digests:
            layers = conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0)).where(
                blobs.c.digest.in_(manifest.blob_digests))).scalar_one()
        return len(manifest.content) + int(layers)

    def _insert_manifest(self, conn: Connection, repo_id: int, manifest: NewManifest,
                         now: int) -> int:
        inserted = conn.execute(self._insert(manifests).values(
            repository_id=repo_id, digest=manifest.digest, media_type=manifest.media_type,
            artifact_type=manifest.artifact_type, config_media_type=manifest.config_media_type,
            subject_digest=manifest.subject_digest,
            annotations=json.dumps(manifest.annotations) if manifest.annotations else None,
            size=len(manifest.content), content=manifest.content, pushed_at=now,
            image_size=self._image_size(conn, repo_id, manifest),
        ).on_conflict_do_nothing(index_elements=["repository_id", "digest"])
         .returning(manifests.c.id)).scalar_one_or_none()
        if inserted is None:
            # A concurrent push of the same manifest won the insert: its row is the one.
            winner = self._manifest_id(conn, repo_id, manifest.digest)
            assert winner is not None
            return winner
        references = [{"manifest_id": inserted, "kind": "blob", "digest": d}
                      for d in sorted(manifest.blob_digests)]
        references += [{"manifest_id": inserted, "kind": "manifest", "digest": d}
                       for d in sorted(manifest.child_digests)]
        if references:
            conn.execute(insert(manifest_references), references)
        return inserted

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest and every tag that points at it."""
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            gone = conn.execute(select(manifests.c.media_type, manifests.c.size).where(
                manifests.c.repository_id == repo_id, manifests.c.digest == digest)).first()
            result = conn.execute(delete(manifests).where(
                manifests.c.repository_id == repo_id, manifests.c.digest == digest))
            if result.rowcount > 0 and gone is not None:
                self.outbox.record(conn, [Change("delete", repository, digest, gone.media_type,
                                                 gone.size)], now_us())
            return result.rowcount > 0

    def delete_tag(self, repository: str, tag: str) -> bool:
        with self._write() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return False
            gone = conn.execute(
                select(manifests.c.digest, manifests.c.media_type, manifests.c.size)
                .join(tags, tags.c.manifest_id == manifests.c.id)
                .where(tags.c.repository_id == repo_id, tags.c.name == tag)).first()
            result = conn.execute(delete(tags).where(
                tags.c.repository_id == repo_id, tags.c.name == tag))
            if result.rowcount > 0 and gone is not None:
                self.outbox.record(conn, [Change("delete", repository, gone.digest,
                                                 gone.media_type, gone.size, tag)], now_us())
            return result.rowcount > 0

    def list_tags(self, repository: str, last: str | None, limit: int | None) -> list[str] | None:
        """Tag names in byte order after `last`; None when the repository does not exist."""
        with self._read() as conn:
            repo_id = self._repository_id(conn, repository)
            if repo_id is None:
                return None
            query = select(tags.c.name).where(tags.c.repository_id == repo_id)
            if last:
                query = query.where(tags.c.name > last)
            query = query.order_by(tags.c.name)
            if limit is not None:
                query = query.limit(limit)
            return list(conn.execute(query).scalars())

def _push_changes(repository: str, manifest: NewManifest, created: bool,
                  moved: list[str]) -> list[Change]:
    """A new manifest is a push (named by its first tag); tags moved onto it are tag events."""
    def change(action: str, tag: str | None) -> Change:
        return Change(action, repository, manifest.digest, manifest.media_type,
                      len(manifest.content), tag,
                      manifest.artifact_type or manifest.config_media_type)
    if created:
        return [change("push", moved[0] if moved else None),
                *(change("tag", tag) for tag in moved[1:])]
    return [change("tag", tag) for tag in moved]
