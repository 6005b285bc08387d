"""Background delivery of outbox events: claim due deliveries with a lease, POST them, settle.

Runs as a task in every worker; the lease makes each delivery attempted by one worker (or
node) at a time. A failed attempt is retried after an exponential backoff with jitter; events
older than `max_age_hours`, or beyond `max_backlog` pending per endpoint, are given up. Pushes
never wait for any of this: they only add rows to the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid

import aiohttp

from cargohold.config_notifications import NotificationEndpoint, NotificationSettings
from cargohold.services import metrics
from cargohold.services.events.formats import SIGNATURE_HEADER, render, signature
from cargohold.services.storage import Storage
from cargohold.storage.events import Claimed, Settlement
from cargohold.storage.metadata import now_us

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
MAINTENANCE_SECONDS = 30.0
BATCH = 50


class Dispatcher:
    def __init__(self, storage: Storage, settings: NotificationSettings, *, region: str,
                 account: str, source: dict[str, str]) -> None:
        self.storage = storage
        self.settings = settings
        self.endpoints = {endpoint.label: endpoint for endpoint in settings.endpoints}
        self.region = region
        self.account = account
        self.source = source
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_maintenance = 0.0
        self._settled: list[Settlement] = []  # written in one transaction per poll
        self._failures: dict[str, int] = {}  # consecutive failures per endpoint
        self._paused_until: dict[str, float] = {}

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: exponential, capped, with jitter in [50%, 100%]."""
        delay = min(self.settings.backoff_max,
                    self.settings.backoff_initial * 2 ** min(attempts, 40))
        return delay * random.uniform(0.5, 1.0)

    def start(self) -> None:
        # Without endpoints the task still purges old events, every MAINTENANCE_SECONDS.
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush_settlements()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession()
        while True:
            try:
                if time.monotonic() - self._last_maintenance > MAINTENANCE_SECONDS:
                    await self._maintain(list(self.endpoints))
                await self._flush_settlements()
                ready = [c for c in self.endpoints
                         if self._paused_until.get(c, 0.0) <= time.monotonic()]
                if ready and len(self._inflight) < BATCH and await self.storage.read(
                        self.storage.events.has_due, ready, now_us()):
                    for consumer in ready:
                        await self._claim_and_send(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event dispatcher iteration failed; continuing")
            await asyncio.sleep(POLL_SECONDS)

    async def _claim_and_send(self, consumer: str) -> None:
        """Claim due deliveries of one endpoint: a batch, or one probe while it is failing."""
        room = BATCH - len(self._inflight)
        limit = min(room, 1 if self._failures.get(consumer) else room)
        if limit <= 0:
            return
        owner = uuid.uuid4().hex
        lease = int((self.endpoints[consumer].timeout + 30) * 1e6)
        claimed = await self.storage.db(self.storage.events.claim, [consumer], owner, now_us(),
                                        lease, limit)
        for item in claimed:
            task = asyncio.get_running_loop().create_task(self._deliver(item, owner))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, item: Claimed, owner: str) -> None:
        endpoint = self.endpoints[item.consumer]
        error = await self._post(endpoint, item)
        if error is None:
            metrics.EVENT_DELIVERIES.labels(item.consumer, "delivered").inc()
            self._failures.pop(item.consumer, None)
            self._settled.append(Settlement(item.delivery, owner, True))
            return
        metrics.EVENT_DELIVERIES.labels(item.consumer, "failed").inc()
        # Back off the delivery, and the endpoint as a whole: until it answers again this
        # worker sends it one probe per backoff period, not its whole backlog.
        failures = self._failures[item.consumer] = self._failures.get(item.consumer, 0) + 1
        self._paused_until[item.consumer] = time.monotonic() + self.backoff(failures - 1)
        retry_at = now_us() + int(self.backoff(item.attempts) * 1e6)
        log.info("event %s to %s failed (attempt %d): %s", item.event.event_id, item.consumer,
                 item.attempts + 1, error)
        self._settled.append(Settlement(item.delivery, owner, False, retry_at, error))

    async def _flush_settlements(self) -> None:
        settled, self._settled = self._settled, []
        if settled:
            await self.storage.db(self.storage.events.settle, settled, now_us())

    async def _post(self, endpoint: NotificationEndpoint, item: Claimed) -> str | None:
        """POST one event; None on a 2xx answer, else what went wrong."""
        assert self._session is not None
        body, content_type = render(endpoint.format, item.event.data, self.source,
                                    self.region, self.account)
        headers = {**endpoint.headers, "Content-Type": content_type,
                   "X-Cargohold-Event-Id": item.event.event_id}
        if endpoint.secret:
            headers[SIGNATURE_HEADER] = signature(endpoint.secret, body)
        try:
            async with self._session.post(
                    endpoint.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=endpoint.timeout)) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"timed out after {endpoint.timeout}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    async def _maintain(self, consumers: list[str]) -> None:
        self._last_maintenance = time.monotonic()
        now = now_us()
        settings = self.settings
        counts: dict[tuple[str, str], int] = {}
        if consumers:
            counts = await self.storage.db(self.storage.events.expire, consumers,
                                           now - int(settings.max_age_hours * 3600e6),
                                           settings.max_backlog, now)
        for (consumer, result), count in counts.items():
            if count:
                metrics.EVENT_DELIVERIES.labels(consumer, result).inc(count)
                log.warning("%d events for %s %s", count, consumer, result)
        await self.storage.db(self.storage.events.purge,
                              now - int(settings.retention_hours * 3600e6))
