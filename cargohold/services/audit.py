"""The audit log: authentication failures, denied requests and every state-changing request.

Events are queued and written in small batches off the request path, so a 1000-layer push does
not pay a database write per request; a batch is written at least every half second and when
the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cargohold.services.storage import Storage
from cargohold.storage.identity import AuditEvent, IdentityStore

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 0.5
BATCH = 500


class AuditLog:
    def __init__(self, storage: Storage, store: IdentityStore) -> None:
        self.storage = storage
        self.store = store
        self._pending: list[AuditEvent] = []
        self._task: asyncio.Task[None] | None = None

    def record(self, event: AuditEvent) -> None:
        self._pending.append(event)
        if len(self._pending) >= BATCH:
            asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        events, self._pending = self._pending, []
        if not events:
            return
        try:
            await self.storage.db(self.store.record_audit, events)
        except Exception:
            log.exception("could not write %d audit events", len(events))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
