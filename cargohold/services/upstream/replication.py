"""Replication to other registries (any OCI registry), the ECR way.

A push, tag or (when the rule asks) delete that matches a replication rule gets one outbox
delivery per destination (`replicate:<registryId>`), written in the same transaction as the
change (the router below runs inside it). A background task on every node claims due
deliveries with a lease (so one node works on each), copies the manifest with its blobs (HEAD
first: blobs the destination has are skipped; a blob that another repository replicating to
the same destination holds is mounted from there), child manifests and referrers, then the
tag, and settles the delivery; a failure is retried with exponential backoff. Every step is
idempotent, so a delivery interrupted by a crash is simply done again.

Rules and destinations are cached in memory and re-read every second: a configuration change
reaches the other workers within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from cargohold.config_upstreams import UpstreamSettings
from cargohold.services import metrics
from cargohold.services.storage import Storage
from cargohold.services.upstream.client import UpstreamClient, UpstreamError
from cargohold.services.upstream.rules import UpstreamCredential, upstream_base_url
from cargohold.storage.events import Change, Claimed, Router, Settlement
from cargohold.storage.metadata import now_us
from cargohold.storage.mounts import repositories_holding
from cargohold.storage.referrers import all_referrers
from cargohold.storage.replication import CONSUMER_PREFIX, Destination, ReplicationStore
from cargohold.wire.manifest import parse_manifest

log = logging.getLogger(__name__)
LEASE_US = 120_000_000
POLL_SECONDS = 0.5
REFRESH_SECONDS = 1.0
BATCH = 8
MAINTAIN_SECONDS = 5.0  # how often the backlog bounds are applied
MOUNT_CANDIDATES = 50  # holders of a blob looked at for a repository to mount it from


def abandoned_reason(status: str, last_error: str | None, settings: UpstreamSettings) -> str:
    """Why a replication was given up, for DescribeImageReplicationStatus."""
    if status == "expired":
        reason = (f"Expired: not replicated within {settings.replication_max_age_hours:g} "
                  "hours (upstreams.replication_max_age_hours)")
    elif status == "dropped":
        reason = (f"Dropped: more than {settings.replication_max_backlog} replications were "
                  "waiting for this destination (upstreams.replication_max_backlog)")
    else:
        reason = status
    return f"{reason}; last error: {last_error}" if last_error else reason


def matches(rule: dict[str, Any], repository: str) -> bool:
    filters = rule.get("repositoryFilters") or []
    return not filters or any(repository.startswith(f["filter"]) for f in filters)


class ReplicationService:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = ReplicationStore(storage.database)
        self.retry_max = storage.settings.upstreams.replication_retry_max
        self.config: dict[str, Any] = {"rules": []}
        self.destinations: dict[str, Destination] = {}
        self._loaded_at = -1e9
        self._owner = f"replicator-{uuid.uuid4().hex[:12]}"
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, tuple[Destination, UpstreamClient]] = {}
        self._task: asyncio.Task[None] | None = None
        self._maintained_at = -1e9
        base: Router | None = storage.outbox.router

        def route(change: Change) -> tuple[list[str], dict[str, Any]]:
            consumers, context = base(change) if base else ([], {})
            return consumers + self.consumers_for(change), context

        storage.outbox.router = route

    def consumers_for(self, change: Change) -> list[str]:
        """The replication deliveries a change needs (runs inside the change's transaction)."""
        if change.action not in ("push", "tag", "delete") or not change.digest:
            return []
        targets: list[str] = []
        for rule in self.config.get("rules", []):
            if change.action == "delete" and not rule.get("deleteReplication", {}).get(
                    "enabled"):
                continue
            if matches(rule, change.repository):
                targets += [CONSUMER_PREFIX + d["registryId"] for d in rule["destinations"]]
        return list(dict.fromkeys(targets))

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return
        self.config = await self.storage.db(self.store.configuration)
        self.destinations = {d.registry_id: d for d in
                             await self.storage.db(self.store.destinations)}
        self._loaded_at = time.monotonic()

    async def put_configuration(self, config: dict[str, Any]) -> None:
        await self.storage.db(self.store.put_configuration, config)
        await self.refresh(force=True)

    # -- the background worker --------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            claimed: list[Claimed] = []
            try:
                await self.refresh()
                consumers = [CONSUMER_PREFIX + registry_id for registry_id in self.destinations]
                if consumers and time.monotonic() - self._maintained_at >= MAINTAIN_SECONDS:
                    await self._bound_backlogs(consumers)
                if consumers:
                    claimed = await self.storage.db(self.storage.events.claim, consumers,
                                                    self._owner, now_us(), LEASE_US, BATCH)
                for delivery in claimed:
                    await self._deliver(delivery)
            except Exception:
                log.exception("replication round failed")
            if not claimed:
                await asyncio.sleep(POLL_SECONDS)

    async def _bound_backlogs(self, consumers: list[str]) -> None:
        """Give up replications older than the age bound (expired) and the oldest beyond the
        backlog bound of each destination (dropped): a destination that never returns must
        not grow the outbox forever. The rest still replicate when it returns."""
        self._maintained_at = time.monotonic()
        settings = self.storage.settings.upstreams
        now = now_us()
        counts = await self.storage.db(
            self.storage.events.expire, consumers,
            now - int(settings.replication_max_age_hours * 3600e6),
            settings.replication_max_backlog, now)
        for (consumer, result), count in counts.items():
            if count:
                registry_id = consumer[len(CONSUMER_PREFIX):]
                metrics.REPLICATIONS_ABANDONED.labels(registry_id, result).inc(count)
                log.warning("%d replications to %s %s", count, registry_id, result)

    async def _deliver(self, delivery: Claimed) -> None:
        registry_id = delivery.consumer[len(CONSUMER_PREFIX):]
        events = self.storage.events
        try:
            destination = self.destinations.get(registry_id)
            if destination is None:
                raise LookupError(f"no replication destination {registry_id} is configured")
            await self._replicate(registry_id, self._client(destination), delivery.event.data)
        except Exception as exc:
            delay = min(self.retry_max, 2.0 ** delivery.attempts) * random.uniform(0.5, 1.0)
            reason = exc.message if isinstance(exc, UpstreamError) else f"{exc}"
            log.warning("replication to %s failed (attempt %d): %s", registry_id,
                        delivery.attempts + 1, reason)
            await self.storage.db(events.settle, [Settlement(
                delivery.delivery, self._owner, delivered=False,
                retry_at=now_us() + int(delay * 1e6),
                error=f"{type(exc).__name__}: {reason}")], now_us())
            return
        await self.storage.db(events.settle, [Settlement(delivery.delivery, self._owner,
                                                         delivered=True)], now_us())

    def _client(self, destination: Destination) -> UpstreamClient:
        cached = self._clients.get(destination.registry_id)
        if cached is not None and cached[0] == destination:
            return cached[1]
        credential = None
        if destination.username is not None and destination.secret_ciphertext is not None:
            credential = UpstreamCredential(destination.username,
                                            self.storage.keys.unseal(
                                                destination.secret_ciphertext))
        if self._session is None:
            settings = self.storage.settings.upstreams
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, connect=settings.connect_timeout, sock_read=settings.timeout))
        client = UpstreamClient(self._session, upstream_base_url(destination.url), credential,
                                actions="pull,push")
        self._clients[destination.registry_id] = (destination, client)
        return client

    # -- copying ----------------------------------------------------------------------------

    async def _replicate(self, registry_id: str, client: UpstreamClient,
                         event: dict[str, Any]) -> None:
        repository, digest, tag = event["repository"], event["digest"], event.get("tag")
        if event["action"] == "delete":
            with contextlib.suppress(UpstreamError):  # gone already (or never there)
                response = await client.request(
                    "DELETE", f"/v2/{repository}/manifests/{tag or digest}", repository)
                response.release()
            return
        await self._copy_manifest(_Target(registry_id, client), repository, digest, set())
        if tag:
            current = await self.storage.db(self.storage.metadata.get_manifest, repository,
                                            tag=tag)
            if current is not None and current.digest == digest:  # not moved on since
                await self._put_manifest(client, repository, tag, current.content,
                                         current.media_type)

    async def _copy_manifest(self, target: _Target, repository: str, digest: str,
                             seen: set[str]) -> None:
        client = target.client
        if digest in seen:
            return
        seen.add(digest)
        record = await self.storage.db(self.storage.metadata.get_manifest, repository,
                                       digest=digest)
        if record is None:
            return  # deleted since: nothing to copy
        if not await self._exists(client, f"/v2/{repository}/manifests/{digest}", repository):
            parsed = parse_manifest(record.content, record.media_type)
            for child in sorted(parsed.required_manifests()):
                await self._copy_manifest(target, repository, child, seen)
            for blob in sorted(parsed.required_blobs()):
                await self._copy_blob(target, repository, blob)
            await self._put_manifest(client, repository, digest, record.content,
                                     record.media_type)
        for referrer in await self.storage.db(all_referrers, self.storage.database, repository,
                                              digest):
            await self._copy_manifest(target, repository, referrer.digest, seen)

    async def _put_manifest(self, client: UpstreamClient, repository: str, reference: str,
                            content: bytes, media_type: str) -> None:
        response = await client.request("PUT", f"/v2/{repository}/manifests/{reference}",
                                        repository, {"Content-Type": media_type}, content)
        response.release()

    async def _exists(self, client: UpstreamClient, path: str, repository: str) -> bool:
        try:
            response = await client.request("HEAD", path, repository)
        except UpstreamError as exc:
            if exc.status == 404:
                return False
            raise
        response.release()
        return True

    async def _copy_blob(self, target: _Target, repository: str, digest: str) -> None:
        """Skip a blob the destination has; else mount it from another repository we
        replicated to that destination (201: done), else upload it (a refused mount's 202
        is the upload session)."""
        client = target.client
        if await self._exists(client, f"/v2/{repository}/blobs/{digest}", repository):
            return
        location = await self.storage.blobs.locate(digest)
        if location is None:
            raise LookupError(f"blob {digest} of {repository} has no bytes here")
        source = await self._mount_source(target.registry_id, repository, digest)
        if source is not None:
            started = await client.request(
                "POST", f"/v2/{repository}/blobs/uploads/?"
                + urlencode({"mount": digest, "from": source}), repository,
                also_pull=source)
            started.release()
            if started.status == 201:
                return
        else:
            started = await client.request("POST", f"/v2/{repository}/blobs/uploads/",
                                           repository)
            started.release()
        upload = urljoin(client.base_url + "/", started.headers.get("Location", ""))
        separator = "&" if "?" in upload else "?"
        response = await client.request(
            "PUT", f"{upload}{separator}digest={digest}", repository,
            {"Content-Type": "application/octet-stream",
             "Content-Length": str(location.size)},
            self.storage.blobs.read(digest))
        response.release()

    async def _mount_source(self, registry_id: str, repository: str,
                            digest: str) -> str | None:
        """Another repository here that holds the blob and replicates to this destination,
        so that the destination probably holds the blob there already."""
        holders = await self.storage.db(repositories_holding, self.storage.database, digest,
                                        repository, MOUNT_CANDIDATES)
        for holder in holders:
            if any(matches(rule, holder) and any(d["registryId"] == registry_id
                                                 for d in rule["destinations"])
                   for rule in self.config.get("rules", [])):
                return holder
        return None


@dataclass(frozen=True, slots=True)
class _Target:
    """The destination a delivery copies to."""

    registry_id: str
    client: UpstreamClient
