"""ECR lifecycle policies: evaluation (shared by preview and run, so they cannot disagree),
policy management, and the runs that expire images.

Evaluation, as ECR documents it: rules apply in priority order; each rule selects images by
tag status and tag list, then picks, oldest first, those beyond `countNumber`
(imageCountMoreThan, counting newest first) or older than `countNumber` days (since push, or
since the last pull, falling back to the push). An image is expired by at most one rule, and
an image a rule selected is never expired by a lower-priority rule; lower-priority rules still
count it, as if it had not been expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.services.images import ImageService
from cargohold.services.manifests import ManifestService
from cargohold.services.metrics import LIFECYCLE_EXPIRATIONS
from cargohold.services.storage import Storage
from cargohold.storage.events import DELETE_CAUSE
from cargohold.storage.identity import AuditEvent
from cargohold.storage.images import ImageRecord
from cargohold.storage.lifecycle import ImageFacts, LifecycleStore, StoredPolicy
from cargohold.storage.maintenance import MaintenanceStore
from cargohold.storage.metadata import RepositoryNotFound, now_us
from cargohold.wire.ecr import EcrError
from cargohold.wire.lifecycle import Policy, Rule, parse_policy

log = logging.getLogger(__name__)
DAY_US = 86_400 * 1_000_000
JOB = "lifecycle"


@dataclass(frozen=True, slots=True)
class Expiry:
    image: ImageFacts
    rule: Rule

    def shape(self) -> dict[str, Any]:
        """A GetLifecyclePolicyPreview result."""
        result: dict[str, Any] = {"imageDigest": self.image.digest,
                                  "imagePushedAt": self.image.pushed_at / 1e6,
                                  "action": {"type": "EXPIRE"},
                                  "appliedRulePriority": self.rule.priority}
        if self.image.tags:
            result["imageTags"] = list(self.image.tags)
        return result


def evaluate(policy: Policy, images: Sequence[ImageFacts], now: int) -> list[Expiry]:
    """The images `policy` expires at time `now` (µs), oldest first."""
    claimed: set[str] = set()
    expired: dict[str, Expiry] = {}
    for rule in policy.rules:
        selected = [image for image in images if rule.selects(image.tags)]
        if rule.count_type == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda i: (i.pushed_at, i.digest), reverse=True)
            candidates = newest_first[rule.count_number:]
        else:
            limit = now - rule.count_number * DAY_US
            pulled = rule.count_type == "sinceImagePulled"
            candidates = [i for i in selected
                          if ((i.last_pulled_at or i.pushed_at) if pulled else i.pushed_at)
                          < limit]
        for image in candidates:
            if image.digest not in claimed:
                expired[image.digest] = Expiry(image, rule)
        claimed.update(image.digest for image in selected)
    return sorted(expired.values(), key=lambda e: (e.image.pushed_at, e.image.digest))


@dataclass(slots=True)
class LifecycleReport:
    dry_run: bool
    ran: bool = True
    repositories_evaluated: int = 0
    images_expired: int = 0
    expired: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_not_found(name: str, registry_id: str) -> EcrError:
    return EcrError("LifecyclePolicyNotFoundException",
                    f"Lifecycle policy does not exist for the repository with name '{name}' "
                    f"in the registry with id '{registry_id}'")


def _repository_not_found(name: str, registry_id: str) -> EcrError:
    return EcrError("RepositoryNotFoundException",
                    f"The repository with name '{name}' does not exist in the registry with "
                    f"id '{registry_id}'")


class LifecycleService:
    def __init__(self, storage: Storage, registry_id: str = "",
                 clock: Callable[[], int] = now_us) -> None:
        self.storage = storage
        self.store = LifecycleStore(storage.database)
        self.registry_id = registry_id
        self.clock = clock

    async def _call(self, repository: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.storage.db(fn, repository, *args)
        except RepositoryNotFound:
            raise _repository_not_found(repository, self.registry_id) from None

    # -- policies ------------------------------------------------------------------------

    async def put_policy(self, repository: str, text: str) -> None:
        parse_policy(text)  # InvalidParameterException before anything is stored
        await self._call(repository, self.store.put_policy, text)

    async def get_policy(self, repository: str) -> StoredPolicy:
        stored = await self._call(repository, self.store.get_policy)
        if stored is None:
            raise policy_not_found(repository, self.registry_id)
        return stored  # type: ignore[no-any-return]

    async def delete_policy(self, repository: str) -> StoredPolicy:
        stored = await self._call(repository, self.store.delete_policy)
        if stored is None:
            raise policy_not_found(repository, self.registry_id)
        return stored  # type: ignore[no-any-return]

    # -- evaluation ----------------------------------------------------------------------

    async def expiries(self, repository: str, text: str) -> list[Expiry]:
        images = await self._call(repository, self.store.images)
        return evaluate(parse_policy(text), images, self.clock())

    async def start_preview(self, repository: str, text: str | None) -> tuple[str, str]:
        """Evaluate `text` (default: the stored policy) now; the result is kept for
        GetLifecyclePolicyPreview. It is computed right away, so its status is COMPLETE."""
        if text is None:
            text = (await self.get_policy(repository)).text
        else:
            parse_policy(text)
        results = [expiry.shape() for expiry in await self.expiries(repository, text)]
        await self._call(repository, self.store.save_preview, text, "COMPLETE", results)
        return text, "COMPLETE"

    async def get_preview(self, repository: str) -> Any:
        preview = await self._call(repository, self.store.get_preview)
        if preview is None:
            raise EcrError("LifecyclePolicyPreviewNotFoundException",
                           f"There is no lifecycle policy preview for the repository with "
                           f"name '{repository}' in the registry with id '{self.registry_id}'")
        return preview

    # -- runs ----------------------------------------------------------------------------

    async def run(self, repository: str | None = None, *, dry_run: bool = False
                  ) -> LifecycleReport:
        """Apply the stored policies (of one repository, or all); one runner at a time."""
        report = LifecycleReport(dry_run)
        locks = MaintenanceStore(self.storage.database)
        lease = await self.storage.db(locks.try_acquire, JOB)
        if lease is None:
            report.ran = False
            return report
        started = now_us()
        try:
            names = ([repository] if repository is not None
                     else await self.storage.db(self.store.repositories_with_policies))
            for name in names:
                try:
                    stored = await self.get_policy(name)
                except EcrError:
                    if repository is not None:
                        raise
                    continue  # deleted (with its policy) since the listing
                report.repositories_evaluated += 1
                for expiry in await self.expiries(name, stored.text):
                    report.expired.append({"repository": name, **expiry.shape()})
                    if not dry_run:
                        await self._expire(name, expiry)
                        report.images_expired += 1
                if not dry_run:
                    await self._call(name, self.store.mark_evaluated, self.clock())
            if dry_run:
                report.images_expired = len(report.expired)
            await self.storage.db(locks.record_run, JOB, lease.holder, started, dry_run,
                                  {k: v for k, v in report.as_dict().items() if k != "expired"})
        finally:
            await self.storage.db(lease.release)
        return report

    async def _expire(self, repository: str, expiry: Expiry) -> None:
        """Remove the image as BatchDeleteImage would (by digest, with its tags), then the
        children of an index that nothing else keeps. Garbage collection frees the bytes."""
        images = ImageService(self.storage, ManifestService(self.storage))
        children = await self._call(repository, self.store.children, expiry.image.digest)
        cause = DELETE_CAUSE.set("lifecycle")  # its events say a policy expired it
        try:
            deleted, _ = await images.batch_delete(repository,
                                                   [{"imageDigest": expiry.image.digest}])
            if not deleted:
                return
            for child in children:
                found = await images.find(repository, {"imageDigest": child})
                if isinstance(found, ImageRecord) and not found.tags:
                    await images.batch_delete(repository, [{"imageDigest": child}])
        finally:
            DELETE_CAUSE.reset(cause)
        LIFECYCLE_EXPIRATIONS.labels(reason=expiry.rule.count_type).inc()
        detail = {"imageDigest": expiry.image.digest, "imageTags": list(expiry.image.tags),
                  "rulePriority": expiry.rule.priority,
                  "ruleDescription": expiry.rule.description}
        await self.storage.db(self.storage.identity.record_audit, [AuditEvent(
            at=now_us(), principal="lifecycle-policy", access_key_id=None,
            action="LifecyclePolicyExpireImage", repository=repository, outcome="allowed",
            status=None, remote=None, detail=json.dumps(detail))])

    async def run_periodically(self, every: float) -> None:
        if every <= 0:
            return
        while True:
            await asyncio.sleep(every * random.uniform(0.9, 1.1))
            try:
                await self.run()
            except Exception:
                log.exception("lifecycle policy run failed")
