"""Recording a pushed manifest and its tags in one transaction, on the fast path (sql.py).
Part of the MetadataStore (metadata.py), which mixes this class in."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import bindparam, func, insert, select

from cargohold.storage.ecr_settings import CREATE_ON_PUSH
from cargohold.storage.events import Change, Outbox
from cargohold.storage.records import (
    DescriptorMismatch,
    ManifestPut,
    MissingReferences,
    NewManifest,
    TagImmutable,
    now_us,
)
from cargohold.storage.schema import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from cargohold.storage.sql import Prepared, Tx
from cargohold.storage.upload_sessions import UploadSessionStore
from cargohold.wire.mutability import tag_is_immutable

# One blob of the repository, locked FOR SHARE (PostgreSQL; SQLite serialises writers):
# garbage collection cannot unlink it until this transaction ends. Taken in digest order, the
# order in which GC locks a repository's links, so the two never deadlock.
_LINKED_BLOB_SIZE = Prepared(
    select(blobs.c.size)
    .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
    .where(repository_blobs.c.repository_id == bindparam("repo_id"),
           blobs.c.digest == bindparam("digest"))
    .with_for_update(read=True, of=repository_blobs))
_BLOB_SIZE = Prepared(select(blobs.c.size).where(blobs.c.digest == bindparam("digest")))
_MANIFEST_ID = Prepared(select(manifests.c.id).where(
    manifests.c.repository_id == bindparam("repo_id"), manifests.c.digest == bindparam("digest")))
_INSERT_MANIFEST = Prepared(lambda upsert: upsert(manifests).values(
    repository_id=bindparam("repo_id"), digest=bindparam("digest"),
    media_type=bindparam("media_type"), artifact_type=bindparam("artifact_type"),
    config_media_type=bindparam("config_media_type"),
    subject_digest=bindparam("subject_digest"), annotations=bindparam("annotations"),
    size=bindparam("size"), content=bindparam("content"), pushed_at=bindparam("now"),
    image_size=bindparam("image_size"),
).on_conflict_do_nothing(index_elements=["repository_id", "digest"]).returning(manifests.c.id))
_INSERT_REFERENCE = Prepared(insert(manifest_references).values(
    manifest_id=bindparam("manifest_id"), kind=bindparam("kind"), digest=bindparam("digest")))
_TAG_TARGET = Prepared(select(tags.c.manifest_id).where(
    tags.c.repository_id == bindparam("repo_id"), tags.c.name == bindparam("name")))
_MOVE_TAG = Prepared(lambda upsert: upsert(tags).values(
    repository_id=bindparam("repo_id"), name=bindparam("name"),
    manifest_id=bindparam("manifest_id"), updated_at=bindparam("now"),
).on_conflict_do_update(index_elements=["repository_id", "name"],
                        set_={"manifest_id": bindparam("manifest_id"),
                              "updated_at": bindparam("now")}))
_MUTABILITY = Prepared(select(repositories.c.image_tag_mutability,
                              repositories.c.tag_mutability_exclusions)
                       .where(repositories.c.id == bindparam("repo_id")))


class ManifestWrites(UploadSessionStore):
    """put_manifest: references checked, manifest inserted, tags moved, events recorded."""

    outbox: Outbox

    def put_manifest(self, repository: str, manifest: NewManifest, tag_names: Sequence[str], *,
                     create: bool, require_references: bool = True,
                     applied_for: str = CREATE_ON_PUSH) -> ManifestPut:
        """Record a manifest and point tags at it, atomically; refuse dangling references,
        descriptors whose size disagrees with the stored content, and moves of immutable tags
        (a pull-through cache, which stores what it fetches on demand and whose content the
        upstream's digest vouches for, skips the reference checks). A refusal rolls the whole
        transaction back, a repository created on push included."""
        def unit(tx: Tx) -> ManifestPut:
            repo_id = self._ensure_repository(tx, repository, create, applied_for)
            blob_sizes = (self._check_references(tx, repo_id, manifest) if require_references
                          else None)
            now = now_us()
            manifest_id = tx.scalar(_MANIFEST_ID, {"repo_id": repo_id,
                                                   "digest": manifest.digest})
            created = manifest_id is None
            if manifest_id is None:
                manifest_id = self._insert_manifest(tx, repo_id, manifest, blob_sizes, now)
            moved = []
            for name in tag_names:
                current = tx.scalar(_TAG_TARGET, {"repo_id": repo_id, "name": name})
                if current == manifest_id:
                    continue
                if current is not None and self._immutable(tx, repo_id, name):
                    raise TagImmutable(name)
                tx.execute(_MOVE_TAG, {"repo_id": repo_id, "name": name,
                                       "manifest_id": manifest_id, "now": now})
                moved.append(name)
            self.outbox.record(tx, _push_changes(repository, manifest, created, moved), now)
            return ManifestPut(created, tuple(moved))
        return self.database.transaction(unit)

    @staticmethod
    def _check_references(tx: Tx, repo_id: int, manifest: NewManifest) -> dict[str, int]:
        """Refuse a manifest naming content the repository lacks (MissingReferences) or
        describing it otherwise than stored (DescriptorMismatch); the sizes of its blobs.

        The rows read are locked FOR SHARE (PostgreSQL; SQLite serialises writers), in one
        order with garbage collection, so GC cannot unlink what this manifest is about to
        reference until this transaction ends, and the two never deadlock."""
        wanted_blobs = set(manifest.blob_digests) | {
            ref.digest for ref in manifest.declared if ref.kind == "blob"}
        blob_sizes: dict[str, int] = {}
        for digest in sorted(wanted_blobs):
            size = tx.scalar(_LINKED_BLOB_SIZE, {"repo_id": repo_id, "digest": digest})
            if size is not None:
                blob_sizes[digest] = int(size)
        stored_manifests: dict[str, tuple[int, str]] = {}
        wanted_manifests = set(manifest.child_digests) | {
            ref.digest for ref in manifest.declared if ref.kind == "manifest"}
        if wanted_manifests:
            # Locked in id order, as GC locks manifests: an IN list, on a full Connection.
            stored_manifests = {row.digest: (row.size, row.media_type) for row in tx.sa.execute(
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
        return blob_sizes

    @staticmethod
    def _immutable(tx: Tx, repo_id: int, tag: str) -> bool:
        mutability, exclusions = tx.one(_MUTABILITY, {"repo_id": repo_id})
        return tag_is_immutable(mutability, json.loads(exclusions or "[]"), tag)

    @staticmethod
    def _image_size(tx: Tx, repo_id: int, manifest: NewManifest,
                    blob_sizes: dict[str, int] | None) -> int:
        """Manifest + config + layers; for an index, its largest child (as ECR reports)."""
        if manifest.child_digests:
            largest = tx.sa.execute(select(func.max(manifests.c.image_size)).where(
                manifests.c.repository_id == repo_id,
                manifests.c.digest.in_(manifest.child_digests))).scalar_one_or_none()
            return int(largest or 0)
        layers = 0
        for digest in manifest.blob_digests:
            size = (blob_sizes.get(digest) if blob_sizes is not None
                    else tx.scalar(_BLOB_SIZE, {"digest": digest}))
            layers += int(size or 0)
        return len(manifest.content) + layers

    def _insert_manifest(self, tx: Tx, repo_id: int, manifest: NewManifest,
                         blob_sizes: dict[str, int] | None, now: int) -> int:
        inserted = tx.scalar(_INSERT_MANIFEST, {
            "repo_id": repo_id, "digest": manifest.digest, "media_type": manifest.media_type,
            "artifact_type": manifest.artifact_type,
            "config_media_type": manifest.config_media_type,
            "subject_digest": manifest.subject_digest,
            "annotations": json.dumps(manifest.annotations) if manifest.annotations else None,
            "size": len(manifest.content), "content": manifest.content, "now": now,
            "image_size": self._image_size(tx, repo_id, manifest, blob_sizes)})
        if inserted is None:
            # A concurrent push of the same manifest won the insert: its row is the one.
            winner = tx.scalar(_MANIFEST_ID, {"repo_id": repo_id, "digest": manifest.digest})
            assert winner is not None
            return int(winner)
        references = [{"manifest_id": inserted, "kind": "blob", "digest": d}
                      for d in sorted(manifest.blob_digests)]
        references += [{"manifest_id": inserted, "kind": "manifest", "digest": d}
                       for d in sorted(manifest.child_digests)]
        tx.many(_INSERT_REFERENCE, references)
        return int(inserted)


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
