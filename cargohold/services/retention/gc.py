"""Online garbage collection: frees what nothing references, while pushes go on.

A run reads the reference graph once and plans, in memory, everything that is garbage at that
moment, including what becomes garbage through the run itself (a referrer whose subject is
gone, the blobs only that referrer used). It then deletes in small batches, each a short
transaction that re-checks its candidates under lock (see `storage/collection.py`), in
dependency order: manifests, then repository links, then blobs. A blob's row goes in one
transaction with a tombstone; its bytes are deleted only after that commits, and the tombstone
is removed last. Uploads of the same digest wait while a tombstone exists.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from cargohold.services.blobs import UploadService
from cargohold.services.metrics import GC_RECLAIMED_BYTES, GC_RUNS
from cargohold.services.storage import Storage
from cargohold.storage.collection import CollectionStore, Graph
from cargohold.storage.maintenance import MaintenanceStore
from cargohold.storage.metadata import now_us

log = logging.getLogger(__name__)
JOB = "gc"
MANIFEST_BATCH = 200
LINK_BATCH = 500
BLOB_BATCH = 200
T = TypeVar("T")


@dataclass(slots=True)
class GcReport:
    """What one run did (or, with dry_run, would do)."""

    dry_run: bool
    grace_seconds: float
    delete_untagged: bool
    ran: bool = True
    manifests_deleted: int = 0
    links_deleted: int = 0
    blobs_deleted: int = 0
    bytes_reclaimed: int = 0
    uploads_purged: int = 0
    duration_seconds: float = 0.0
    skipped_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Plan:
    manifest_waves: list[list[int]] = field(default_factory=list)
    links: list[tuple[int, str]] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    bytes: int = 0


def plan_collection(graph: Graph, cutoff: int, delete_untagged: bool) -> Plan:
    """Everything that is garbage in `graph`, manifests in the order they can be deleted."""
    alive = {m.id: m for m in graph.manifests}
    keys = {(m.repository_id, m.digest): m.id for m in graph.manifests}
    parents: dict[tuple[int, str], int] = defaultdict(int)
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for parent_id, child in graph.child_refs:
        parent = alive.get(parent_id)
        if parent is not None:
            parents[(parent.repository_id, child)] += 1
            children[parent_id].append((parent.repository_id, child))
    referrers: dict[tuple[int, str], list[int]] = defaultdict(list)
    for m in graph.manifests:
        if m.subject_digest:
            referrers[(m.repository_id, m.subject_digest)].append(m.id)

    def garbage(manifest_id: int) -> bool:
        m = alive.get(manifest_id)
        if m is None or m.pushed_at >= cutoff:
            return False
        if m.subject_digest:
            return (m.repository_id, m.subject_digest) not in keys
        return (delete_untagged and m.id not in graph.tagged
                and parents[(m.repository_id, m.digest)] == 0)

    plan = Plan()
    candidates: Sequence[int] = list(alive)
    while candidates:
        wave = sorted({i for i in candidates if garbage(i)})
        if not wave:
            break
        plan.manifest_waves.append(wave)
        following: list[int] = []
        for manifest_id in wave:
            m = alive.pop(manifest_id)
            keys.pop((m.repository_id, m.digest), None)
            for child in children.get(manifest_id, []):
                parents[child] -= 1
                if child in keys:
                    following.append(keys[child])
            following.extend(referrers.get((m.repository_id, m.digest), []))
        candidates = following

    referenced = {(alive[mid].repository_id, digest) for mid, digest in graph.blob_refs
                  if mid in alive}
    plan.links = sorted((repo, digest) for repo, digest, linked_at in graph.links
                        if linked_at < cutoff and (repo, digest) not in referenced)
    dropped = set(plan.links)
    still_linked = {digest for repo, digest, _ in graph.links if (repo, digest) not in dropped}
    still_named = {digest for mid, digest in graph.blob_refs if mid in alive}
    plan.blobs = sorted(d for d in graph.blob_sizes
                        if d not in still_linked and d not in still_named
                        and d not in graph.pinned)
    plan.bytes = sum(graph.blob_sizes[d] for d in plan.blobs)
    return plan


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class GarbageCollector:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = CollectionStore(storage.database)
        self.locks = MaintenanceStore(storage.database)

    async def run(self, grace_seconds: float, *, dry_run: bool = False,
                  delete_untagged: bool = False) -> GcReport:
        """One collection, unless another process is collecting right now (`ran` is False)."""
        report = GcReport(dry_run, grace_seconds, delete_untagged)
        lease = await self.storage.db(self.locks.try_acquire, JOB)
        if lease is None:
            report.ran, report.skipped_reason = False, "another collector is running"
            return report
        started, clock = now_us(), time.monotonic()
        try:
            await self._collect(report, started - int(grace_seconds * 1e6))
            report.duration_seconds = round(time.monotonic() - clock, 3)
            await self.storage.db(self.locks.record_run, JOB, lease.holder, started, dry_run,
                                  report.as_dict())
        except BaseException:
            GC_RUNS.labels(result="failure").inc()
            raise
        finally:
            await self.storage.db(lease.release)
        GC_RUNS.labels(result="success").inc()
        if not dry_run:
            GC_RECLAIMED_BYTES.labels(kind="blobs").inc(report.bytes_reclaimed)
        if not dry_run and (report.blobs_deleted or report.manifests_deleted):
            log.info("garbage collection: %d manifests, %d links, %d blobs (%d bytes) deleted",
                     report.manifests_deleted, report.links_deleted, report.blobs_deleted,
                     report.bytes_reclaimed)
        return report

    async def _collect(self, report: GcReport, cutoff: int) -> None:
        ttl = self.storage.settings.upload_session_ttl_hours * 3600
        if not report.dry_run:
            # Bytes left behind by a collection that crashed after deleting their rows.
            await self._finish_tombstones(report)
        plan = plan_collection(await self.storage.db(self.store.graph), cutoff,
                               report.delete_untagged)
        if report.dry_run:
            report.manifests_deleted = sum(len(wave) for wave in plan.manifest_waves)
            report.links_deleted, report.blobs_deleted = len(plan.links), len(plan.blobs)
            report.bytes_reclaimed = plan.bytes
            report.uploads_purged = await self.storage.db(
                self.store.stale_upload_count, now_us() - int(ttl * 1e6))
            return
        for wave in plan.manifest_waves:
            for batch in _batches(wave, MANIFEST_BATCH):
                deleted = await self.storage.db(self.store.delete_manifests, batch, cutoff,
                                                report.delete_untagged)
                report.manifests_deleted += len(deleted)
        for pairs in _batches(plan.links, LINK_BATCH):
            report.links_deleted += await self.storage.db(self.store.delete_links, pairs, cutoff)
        for digests in _batches(plan.blobs, BLOB_BATCH):
            gone = await self.storage.db(self.store.tombstone_blobs, digests)
            await self._delete_bytes(report, gone)
        report.uploads_purged = await UploadService(self.storage).purge_stale(ttl)

    async def _delete_bytes(self, report: GcReport, gone: Sequence[tuple[str, int]]) -> None:
        for digest, _ in gone:
            location = await self.storage.blobs.locate(digest)
            await self.storage.blobs.delete(digest)
            report.blobs_deleted += 1
            report.bytes_reclaimed += location.size if location is not None else 0
        await self.storage.db(self.store.clear_tombstones, [digest for digest, _ in gone])

    async def _finish_tombstones(self, report: GcReport) -> None:
        while leftovers := await self.storage.db(self.store.tombstones, BLOB_BATCH):
            await self._delete_bytes(report, leftovers)

    async def run_periodically(self, every: float, grace_seconds: float) -> None:
        """The in-server collector; with several workers or nodes only one collects at once."""
        if every <= 0:
            return
        while True:
            await asyncio.sleep(every * random.uniform(0.8, 1.2))
            try:
                await self.run(grace_seconds)
            except Exception:
                log.exception("garbage collection failed")
