"""`GET /metrics`: Prometheus text format, for every worker of this server.

Counters and histograms come from the multiprocess files every worker writes (see
`services/metrics.py`); gauges that describe shared state (health, stored totals, event
backlog) are computed here from the database, cached for a few seconds so a scrape costs at
most a handful of aggregate queries.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cargohold.http.keys import STORAGE_KEY
from cargohold.services.metrics import multiprocess_dir
from cargohold.services.storage import Storage

STATS_TTL_SECONDS = 5.0


class SharedStateCollector:
    """Gauges read from the database and the blob store (the same for every worker)."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        health = GaugeMetricFamily("cargohold_health", "1 when the component answers, else 0.",
                                   labels=["component"])
        for component, ok in self.stats["health"].items():
            health.add_metric([component], 1.0 if ok else 0.0)
        yield health
        totals = self.stats["totals"]
        for name, key, text in (
                ("cargohold_repositories", "repositories", "Repositories."),
                ("cargohold_manifests", "manifests", "Manifests (images and artifacts)."),
                ("cargohold_blobs", "blobs", "Distinct blobs stored."),
                ("cargohold_stored_bytes", "blob_bytes", "Bytes of distinct blobs stored.")):
            if key in totals:
                yield GaugeMetricFamily(name, text, value=totals[key])
        depth = GaugeMetricFamily("cargohold_event_queue_depth",
                                  "Event deliveries waiting, by endpoint.", labels=["endpoint"])
        for endpoint, count in self.stats["queue"].items():
            depth.add_metric([endpoint], count)
        yield depth


class MetricsEndpoint:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._stats: dict[str, Any] | None = None
        self._stats_at = 0.0
        self._lock = asyncio.Lock()

    async def _shared_state(self) -> dict[str, Any]:
        async with self._lock:
            if self._stats is None or time.monotonic() - self._stats_at > STATS_TTL_SECONDS:
                report = await self.storage.health()
                stats: dict[str, Any] = {
                    "health": {name: part["status"] == "ok" for name, part in report.items()},
                    "totals": {}, "queue": {}}
                if stats["health"].get("database"):
                    stats["totals"] = await self.storage.db(
                        self.storage.events.registry_totals)
                    stats["queue"] = await self.storage.db(self.storage.events.queue_depth)
                for endpoint in self.storage.settings.notifications.endpoints:
                    stats["queue"].setdefault(endpoint.label, 0)
                self._stats, self._stats_at = stats, time.monotonic()
            return self._stats

    async def handle(self, request: web.Request) -> web.Response:
        token = self.storage.settings.metrics_token
        if token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                     token.encode()):
                return web.Response(status=401, text="metrics need a bearer token\n",
                                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        stats = await self._shared_state()
        body = await asyncio.get_running_loop().run_in_executor(None, _render, stats)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _render(stats: dict[str, Any]) -> bytes:
    shared = CollectorRegistry()
    shared.register(SharedStateCollector(stats))
    directory = multiprocess_dir()
    if not directory:  # one process (not started by `cargohold serve`): its own registry
        return generate_latest(REGISTRY) + generate_latest(shared)
    multiprocess.MultiProcessCollector(shared, path=directory)
    return generate_latest(shared)


def add_metrics_route(app: web.Application) -> None:
    if app[STORAGE_KEY].settings.metrics:
        app.router.add_get("/metrics", MetricsEndpoint(app[STORAGE_KEY]).handle)
