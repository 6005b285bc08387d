"""Prometheus metric objects every layer above storage may increment.

All of them carry labels: in multiprocess mode a metric's value file is chosen when a labelled
child is first used, so `enable_multiprocess()` (called by `cargohold serve` before workers fork)
can still switch the value class after this module was imported. Label values are bounded:
route templates (never repository names), methods, status codes, small fixed vocabularies.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram, values

HTTP_REQUESTS = Counter("cargohold_http_requests_total", "HTTP requests served.",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("cargohold_http_request_duration_seconds",
                         "Time from request start to the last byte of the response.",
                         ["route", "method", "status"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
                                  30, 60))
HTTP_RECEIVED_BYTES = Counter("cargohold_http_received_bytes_total",
                              "Request body bytes received.", ["route"])
HTTP_SENT_BYTES = Counter("cargohold_http_sent_bytes_total",
                          "Response bytes sent (status line and headers included).", ["route"])
BLOB_UPLOADS = Counter("cargohold_blob_uploads_total",
                       "Blob upload sessions by outcome: started, completed, failed.", ["outcome"])
MANIFESTS_PUSHED = Counter("cargohold_manifests_pushed_total",
                           "Manifests stored (new or re-tagged), by artifact kind.", ["kind"])
MANIFESTS_PULLED = Counter("cargohold_manifests_pulled_total",
                           "Manifest bodies served, by artifact kind.", ["kind"])
AUTH_FAILURES = Counter("cargohold_auth_failures_total",
                        "Requests whose credentials were missing where required, malformed or "
                        "wrong, by HTTP status.", ["status"])
AUTHZ_DENIALS = Counter("cargohold_authz_denials_total",
                        "Authenticated requests a policy refused, by HTTP status.", ["status"])
# Garbage collection and lifecycle policies (counted by the code that runs them).
GC_RUNS = Counter("cargohold_gc_runs_total", "Garbage-collection runs, by result "
                  "(success, failure).", ["result"])
GC_RECLAIMED_BYTES = Counter("cargohold_gc_reclaimed_bytes_total",
                             "Bytes freed by garbage collection, by kind (blobs, uploads).",
                             ["kind"])
LIFECYCLE_EXPIRATIONS = Counter("cargohold_lifecycle_expirations_total",
                                "Images expired by lifecycle policies, by rule kind "
                                "(e.g. age, count).", ["reason"])
# Event notifications.
EVENTS_RECORDED = Counter("cargohold_events_recorded_total",
                          "Registry events written to the outbox, by action.", ["action"])
EVENT_DELIVERIES = Counter("cargohold_event_deliveries_total",
                           "Event delivery attempts, by endpoint and result (delivered, "
                           "failed, expired, dropped).", ["endpoint", "result"])
REPLICATIONS_ABANDONED = Counter("cargohold_replications_abandoned_total",
                                 "Replications given up, by destination registryId and reason "
                                 "(expired: too old; dropped: beyond the backlog bound).",
                                 ["destination", "reason"])

# Artifact kinds: a small, fixed vocabulary (label values must stay bounded).
ARTIFACT_KINDS = ("image", "index", "helm", "opa", "sbom", "signature", "attestation", "other")
_INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json"}
_IMAGE_CONFIGS = {"application/vnd.oci.image.config.v1+json",
                  "application/vnd.docker.container.image.v1+json"}


@functools.cache
def labelled(metric: Any, *values: str) -> Any:
    """A metric's child for these label values, made once per process: `labels()` costs more
    than the increment (label values are bounded, see above)."""
    return metric.labels(*values)


def artifact_kind(media_type: str, artifact_type: str | None = None,
                  config_media_type: str | None = None) -> str:
    """Which of ARTIFACT_KINDS a manifest is, from its media type, artifactType and config."""
    if media_type in _INDEX_TYPES:
        return "index"
    kind = (artifact_type or config_media_type or "").lower()
    if not kind or kind in _IMAGE_CONFIGS:
        return "image" if media_type.endswith(("manifest.v1+json", "manifest.v2+json")) \
            else "other"
    for marker, name in (("helm", "helm"), ("openpolicyagent", "opa"), ("spdx", "sbom"),
                         ("cyclonedx", "sbom"), ("sbom", "sbom"), ("signature", "signature"),
                         ("cosign", "signature"), ("notary", "signature"),
                         ("in-toto", "attestation"), ("attestation", "attestation")):
        if marker in kind:
            return name
    return "other"


_KIND_CACHE: dict[str, str] = {}


def artifact_kind_of(digest: str, media_type: str, content: bytes) -> str:
    """The kind of a stored manifest (for pulls), parsed once per digest per process."""
    kind = _KIND_CACHE.get(digest)
    if kind is not None:
        return kind
    artifact_type = config_type = None
    if media_type not in _INDEX_TYPES:
        try:
            document: Any = json.loads(content)
            artifact_type = document.get("artifactType")
            config_type = (document.get("config") or {}).get("mediaType")
        except (ValueError, AttributeError):
            pass
    kind = artifact_kind(media_type, artifact_type if isinstance(artifact_type, str) else None,
                         config_type if isinstance(config_type, str) else None)
    if len(_KIND_CACHE) > 10_000:
        _KIND_CACHE.clear()
    _KIND_CACHE[digest] = kind
    return kind


def enable_multiprocess(directory: Path, *, clean: bool = True) -> None:
    """Count in files under `directory`, shared by every worker forked after this call.

    `cargohold serve` empties it first (counters restart with each server run); another
    process of the same node (a maintenance command) may join with `clean=False`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for leftover in directory.glob("*.db") if clean else ():
        leftover.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus-client asks for the process id on every increment (a system call, a few µs
    # under a VM's mitigations: ~5 % of a manifest GET); this one is read once per process.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)


_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _process_id() -> int:
    """This process's id, kept current across fork()."""
    return _PID[0]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")
