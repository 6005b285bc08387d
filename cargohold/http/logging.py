"""Request ids, the access log (one structured line per request) and JSON log formatting.

The access log names the route template, never the raw path or query (presigned download
URLs carry signatures there), and no header values: secrets never reach a log line.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from dataclasses import dataclass
from random import getrandbits
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from cargohold.http.keys import STORAGE_KEY
from cargohold.http.sendfile import SENT_KEY
from cargohold.services import metrics, requestcontext
from cargohold.services.requestcontext import RequestContext

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
access_log = logging.getLogger("cargohold.access")


def route_template(request: BaseRequest) -> str:
    """The matched route's template (`/v2/{name}/blobs/{digest}`), bounded for labels."""
    try:
        # A request that never reached the router (refused by the parser, or a low-level
        # BaseRequest) has no match info: aiohttp asserts rather than returning None.
        match_info = request.match_info  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):
        return "unmatched"
    resource = match_info.route.resource if match_info is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _actor(request: web.Request) -> str | None:
    principal = request.get("principal")
    return getattr(principal, "name", None) if principal is not None else None


@web.middleware
async def request_id_middleware(request: web.Request,
                                handler: web.Handler) -> web.StreamResponse:
    """Take a well-formed X-Request-ID or make one; expose it to services, audit and events."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    # Unique, not secret: 128 random bits from the (per-worker reseeded) Mersenne Twister,
    # without uuid4's getrandom() system call and UUID object on every request.
    request_id = given if _SAFE_REQUEST_ID.match(given) else f"{getrandbits(128):032x}"
    request["request_id"] = request_id
    public_url = request.app[STORAGE_KEY].settings.public_url
    requestcontext.CURRENT.set(RequestContext(
        request_id=request_id, method=request.method, addr=request.remote or "",
        host=request.host, useragent=request.headers.get("User-Agent", "")[:256],
        base_url=(public_url or f"{request.scheme}://{request.host}").rstrip("/"),
        actor_lookup=lambda: _actor(request)))
    return await handler(request)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id


@dataclass(frozen=True, slots=True)
class _Counted:
    requests: Any
    latency: Any
    received: Any
    sent: Any


@functools.lru_cache(maxsize=4096)
def _children(route: str, method: str, status: str) -> _Counted:
    """The metric children of one (route template, method, status): `labels()` costs more
    than the increment, and the combinations are few (bounded by the route table)."""
    return _Counted(metrics.HTTP_REQUESTS.labels(route, method, status),
                    metrics.HTTP_LATENCY.labels(route, method, status),
                    metrics.HTTP_RECEIVED_BYTES.labels(route),
                    metrics.HTTP_SENT_BYTES.labels(route))


class AccessLogger(AbstractAccessLogger):
    """Called by aiohttp once a response is sent: counts the request in the metrics and, when
    `access_log` is on, writes one line (text or JSON)."""

    @property
    def enabled(self) -> bool:
        return True  # metrics count every request, whatever the log level

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = route_template(request)
        status = str(response.status)
        received = request.content.total_bytes if request.body_exists else 0
        sent = response.body_length + request.get(SENT_KEY, 0)
        counted = _children(route, request.method, status)
        counted.requests.inc()
        counted.latency.observe(time)
        if received:
            counted.received.inc(received)
        if sent:
            counted.sent.inc(sent)
        storage = request.app.get(STORAGE_KEY) if hasattr(request, "app") else None
        if storage is None or not storage.settings.access_log:
            return
        principal = request.get("principal")
        repository = request.get("repository") or (
            request.match_info.get("name") if hasattr(request, "match_info") else None)
        fields = {"method": request.method, "route": route, "repository": repository,
                  "status": response.status, "bytes_in": received, "bytes_out": sent,
                  "duration_ms": round(time * 1000, 3),
                  "user": getattr(principal, "name", None), "request_id": request.get(
                      "request_id"), "remote": request.remote}
        if storage.settings.log_format == "json":
            self.logger.info("access", extra={"fields": fields})
        else:
            self.logger.info(" ".join(f"{key}={_text(value)}" for key, value in fields.items()),
                             extra={"fields": fields})


def _text(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    # Quoted (JSON string escapes) when it could split or forge a line: client-chosen names.
    unsafe = not text or any(c in ' "=\\' or not c.isprintable() for c in text)
    return json.dumps(text) if unsafe else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
