"""The audit log: authentication failures, denied requests and every state-changing request.

Events are queued and written in small batches off the request path, so a 1000-layer push does
not pay a database write per request; a batch is written at least every half second and when
the worker stops.
"""

from __future__ import annotations

from dataclasses import replace

from cargohold.services import metrics
from cargohold.services.batching import BatchWriter
from cargohold.services.requestcontext import current_request_id
from cargohold.services.storage import Storage
from cargohold.storage.identity import AuditEvent


class AuditLog(BatchWriter[AuditEvent]):
    def __init__(self, storage: Storage) -> None:
        super().__init__(storage, storage.identity.record_audit, name="audit")

    def record(self, event: AuditEvent) -> None:
        if event.outcome == "unauthenticated":
            metrics.AUTH_FAILURES.labels(str(event.status)).inc()
        elif event.outcome == "denied":
            metrics.AUTHZ_DENIALS.labels(str(event.status)).inc()
        if event.request_id is None:
            event = replace(event, request_id=current_request_id())
        self.add(event)
