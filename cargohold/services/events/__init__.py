"""Event notifications: route changes to endpoints (inside the change's transaction), record
best-effort pull events, and deliver in the background (`dispatcher.py`)."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from typing import Any

from cargohold.config_notifications import NotificationEndpoint, NotificationSettings
from cargohold.services import metrics, requestcontext
from cargohold.services.batching import BatchWriter
from cargohold.services.storage import Storage
from cargohold.storage.events import Change
from cargohold.storage.metadata import ManifestRecord, now_us


def wants(endpoint: NotificationEndpoint, change: Change) -> bool:
    """Whether an endpoint subscribes to this change (event name, repository, media type)."""
    if change.action not in endpoint.events:
        return False
    if endpoint.repositories and not any(fnmatch.fnmatchcase(change.repository, pattern)
                                         for pattern in endpoint.repositories):
        return False
    if endpoint.media_types:
        types = [t for t in (change.media_type, change.artifact_type) if t]
        return any(fnmatch.fnmatchcase(t, pattern) for t in types
                   for pattern in endpoint.media_types)
    return True


def request_context() -> dict[str, Any]:
    context = requestcontext.current()
    if context is None:
        return {}
    actor = context.actor
    return {"request": {"id": context.request_id, "addr": context.addr, "host": context.host,
                        "method": context.method, "useragent": context.useragent},
            "actor": {"name": actor} if actor else {},
            "base_url": context.base_url}


class EventService:
    """Installs the router on the outbox and records pull events (best-effort: batched in a
    transaction of their own after the response, so a crash may lose a few of them)."""

    def __init__(self, storage: Storage, settings: NotificationSettings) -> None:
        self.storage = storage
        self.endpoints = list(settings.endpoints)
        self._pull_endpoints = [e for e in self.endpoints if "pull" in e.events]
        storage.outbox.router = self.route
        storage.outbox.recorded = lambda action: metrics.labelled(metrics.EVENTS_RECORDED,
                                                                     action).inc()
        self.pulls: BatchWriter[Change] = BatchWriter(
            storage, self._record_pulls, interval=0.5, name="pull-events")

    def route(self, change: Change) -> tuple[list[str], dict[str, Any]]:
        return [e.label for e in self.endpoints if wants(e, change)], request_context()

    def _record_pulls(self, changes: list[Change]) -> None:
        self.storage.events.record(self.storage.outbox, changes, now_us())

    def note_pull(self, repository: str, record: ManifestRecord, tag: str | None) -> None:
        """Queue a pull event, only when some endpoint wants pulls of it."""
        if not self._pull_endpoints:
            return
        change = Change("pull", repository, record.digest, record.media_type, record.size, tag)
        if any(wants(endpoint, change) for endpoint in self._pull_endpoints):
            # The batch writer runs outside this request: keep its context in the change.
            self.pulls.add(replace(change, context=request_context()))
