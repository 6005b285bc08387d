"""fsck: check the metadata and the blob store against each other, and repair what can be
repaired without losing data.

Problems found:
- `missing_blob`, `size_mismatch`, `digest_mismatch`: a recorded blob whose bytes are gone,
  truncated or corrupt (the digest check is skipped with `quick`); reported with the
  repositories and manifests that need it. Nothing can repair these but a new push.
- `unrecorded_references`: a manifest's content names blobs or children its reference rows
  lack (so GC could free them); repair records them and links the blobs that exist.
- `unknown_blob`: a manifest references a blob the database has no record of.
- `orphan_blob`: bytes that no blob row and no upload accounts for; repair deletes them (through
  a tombstone, exactly as GC deletes, so an upload of the same digest is never hurt).
- `leftover_upload`: upload scratch data with no session; repair deletes it.
- `pending_deletion`: bytes a crashed collection left half-deleted; repair finishes.
Orphans and scratch younger than `gc_grace` are left alone: an upload may be placing them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.services.storage import Storage
from cargohold.storage.collection import CollectionStore
from cargohold.storage.fsck import FsckStore, StoredManifest
from cargohold.storage.maintenance import MaintenanceStore
from cargohold.wire.digest import parse_digest
from cargohold.wire.errors import RegistryError
from cargohold.wire.manifest import parse_manifest


class FsckBusy(Exception):
    """A garbage collection holds the lock that repairs need."""


@dataclass(slots=True)
class FsckReport:
    quick: bool
    repair: bool
    blobs_checked: int = 0
    manifests_checked: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unrepaired(self) -> int:
        return sum(not p.get("repaired") for p in self.problems)

    def add(self, kind: str, repaired: bool = False, **detail: Any) -> None:
        self.problems.append({"kind": kind, **detail, "repaired": repaired})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems_found": len(self.problems),
                "problems_unrepaired": self.unrepaired}


class Fsck:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = FsckStore(storage.database)
        self.collection = CollectionStore(storage.database)

    async def run(self, *, repair: bool = False, quick: bool = False,
                  grace_seconds: float | None = None) -> FsckReport:
        grace = self.storage.settings.gc_grace if grace_seconds is None else grace_seconds
        report = FsckReport(quick, repair)
        lease = None
        if repair:
            # Repairs delete bytes: never alongside a collection, which does the same.
            lease = await self.storage.db(MaintenanceStore(self.storage.database).try_acquire,
                                          "gc")
            if lease is None:
                raise FsckBusy("a garbage collection is running; try again later")
        try:
            cutoff = time.time() - grace
            sizes = await self.storage.db(self.store.blob_sizes)
            await self._check_blobs(report, sizes)
            await self._check_manifests(report, sizes, repair)
            await self._check_orphans(report, sizes, cutoff, repair)
            await self._check_uploads(report, cutoff, repair)
        finally:
            if lease is not None:
                await self.storage.db(lease.release)
        return report

    async def _check_blobs(self, report: FsckReport, sizes: dict[str, int]) -> None:
        bad: list[dict[str, Any]] = []
        for digest, size in sorted(sizes.items()):
            report.blobs_checked += 1
            location = await self.storage.blobs.locate(digest)
            if location is None:
                bad.append({"kind": "missing_blob", "digest": digest, "expected_size": size})
            elif location.size != size:
                bad.append({"kind": "size_mismatch", "digest": digest, "expected_size": size,
                            "actual_size": location.size})
            elif not report.quick and not await self._digest_matches(digest):
                bad.append({"kind": "digest_mismatch", "digest": digest, "expected_size": size})
        users = await self.storage.db(self.store.users_of, [p["digest"] for p in bad])
        for problem in bad:
            found = users.get(problem["digest"], {"repositories": [], "manifests": []})
            report.add(problem.pop("kind"), **problem, **found)

    async def _digest_matches(self, digest: str) -> bool:
        expected = parse_digest(digest)
        hasher = hashlib.new(expected.algorithm)
        async for chunk in self.storage.blobs.read(digest):
            hasher.update(chunk)
        return hasher.hexdigest() == expected.hex

    async def _check_manifests(self, report: FsckReport, sizes: dict[str, int],
                               repair: bool) -> None:
        manifests = await self.storage.db(lambda: list(self.store.manifests()))
        for manifest in manifests:
            report.manifests_checked += 1
            await self._check_manifest(report, manifest, sizes, repair)

    async def _check_manifest(self, report: FsckReport, manifest: StoredManifest,
                              sizes: dict[str, int], repair: bool) -> None:
        where = f"{manifest.repository}@{manifest.digest}"
        try:
            parsed = parse_manifest(manifest.content, manifest.media_type)
        except RegistryError as exc:
            report.add("unparseable_manifest", manifest=where, detail=exc.message)
            return
        expected = ({("blob", d) for d in parsed.required_blobs()}
                    | {("manifest", d) for d in parsed.required_manifests()})
        recorded = await self.storage.db(self.store.references, manifest.id)
        blob_digests = sorted(d for kind, d in expected if kind == "blob")
        linked = await self.storage.db(self.store.linked, manifest.repository_id, blob_digests)
        for digest in blob_digests:
            if digest not in sizes:
                report.add("unknown_blob", manifest=where, digest=digest)
        missing = sorted(expected - recorded)
        unlinked = [d for d in blob_digests if d in sizes and d not in linked]
        if missing or unlinked:
            if repair:
                # Recording the references also links every existing blob among them.
                to_record = missing + [("blob", d) for d in unlinked
                                       if ("blob", d) not in missing]
                await self.storage.db(self.store.record_references, manifest.id,
                                      manifest.repository_id, to_record)
            report.add("unrecorded_references", repaired=repair, manifest=where,
                       references=[f"{kind}:{digest}" for kind, digest in missing],
                       unlinked_blobs=unlinked)

    async def _check_orphans(self, report: FsckReport, sizes: dict[str, int], cutoff: float,
                             repair: bool) -> None:
        protected = await self.storage.db(self.store.protected_digests)
        tombstoned = {d for d, _ in await self.storage.db(self.collection.tombstones, 1 << 30)}
        try:
            listing = [item async for item in self.storage.blobs.list_blobs()]
        except (NotImplementedError, AttributeError):
            report.add("orphan_check_skipped", detail="this blob store cannot list its blobs")
            return
        for digest, size, modified in listing:
            if digest in sizes or modified >= cutoff:
                continue
            if digest in tombstoned:
                repaired = repair and await self._finish_deletion(digest)
                report.add("pending_deletion", repaired=repaired, digest=digest, size=size)
                continue
            if digest in protected:
                continue  # an upload is publishing these bytes right now
            repaired = False
            if repair and await self.storage.db(self.collection.tombstone_orphan, digest, size):
                await self._finish_deletion(digest)
                repaired = True
            report.add("orphan_blob", repaired=repaired, digest=digest, size=size)

    async def _finish_deletion(self, digest: str) -> bool:
        tombstoned = {d for d, _ in await self.storage.db(self.collection.tombstones, 1 << 30)}
        if digest not in tombstoned:
            return False  # pinned by an upload, not ours to delete
        await self.storage.blobs.delete(digest)
        await self.storage.db(self.collection.clear_tombstones, [digest])
        return True

    async def _check_uploads(self, report: FsckReport, cutoff: float, repair: bool) -> None:
        idle = await self.storage.blobs.idle_uploads(cutoff)
        sessions = await self.storage.db(self.store.upload_ids)
        for upload_id in sorted(set(idle) - sessions):
            if repair:
                await self.storage.blobs.delete_upload(upload_id)
            report.add("leftover_upload", repaired=repair, upload=upload_id)
