"""Wiring of the upstream features, and the /v2 hooks of pull-through cache repositories:
manifest, blob and referrers GETs go through the cache, and pushes into a cache repository are
refused unless its rule allows."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from cargohold.http.auth import Handler
from cargohold.http.growing import send_filling
from cargohold.http.keys import IDENTITY_KEY, MANIFESTS_KEY
from cargohold.services.storage import Storage
from cargohold.services.upstream.cache import PullThroughCache
from cargohold.services.upstream.replication import ReplicationService
from cargohold.services.upstream.rules import RuleService
from cargohold.storage.metadata import ManifestRecord
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.names import validate_name

log = logging.getLogger(__name__)
RULES_KEY = web.AppKey("pull_through_rules", RuleService)
CACHE_KEY = web.AppKey("pull_through_cache", PullThroughCache)
REPLICATION_KEY = web.AppKey("replication", ReplicationService)
PUSH_METHODS = frozenset({"PUT", "POST", "PATCH"})


def install(app: web.Application, storage: Storage) -> None:
    """Wire the upstream features into an application (before it starts): the pull-through
    cache, and replication (its outbox router and background worker)."""
    rules = RuleService(storage, app[IDENTITY_KEY].registry_id)
    cache = PullThroughCache(storage, rules)
    replication = ReplicationService(storage)
    app[RULES_KEY] = rules
    app[CACHE_KEY] = cache
    app[REPLICATION_KEY] = replication
    app.middlewares.append(refuse_cache_pushes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await replication.refresh(force=True)
        replication.start()
        yield
        await replication.stop()
        await cache.close()

    app.cleanup_ctx.append(lifecycle)


@web.middleware
async def refuse_cache_pushes(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = request.match_info.get("name")
    if name and request.method in PUSH_METHODS and request.path.startswith("/v2/"):
        refusal = await request.app[CACHE_KEY].push_refusal(validate_name(name))
        if refusal is not None:
            raise RegistryError(ErrorCode.DENIED, refusal, {"name": name})
    return await handler(request)


async def manifest(request: web.Request, name: str, reference: str) -> ManifestRecord:
    """The manifest through the cache when `name` is a cache repository, else from storage."""
    record = await request.app[CACHE_KEY].manifest(name, reference)
    if record is not None:
        return record
    return await request.app[MANIFESTS_KEY].get(name, reference)


async def upstream_referrers(request: web.Request, name: str, subject: str,
                             artifact_type: str | None) -> dict[str, Any] | None:
    """The upstream's referrers index for a cache repository (when the upstream has the API);
    None when the local referrers answer."""
    return await request.app[CACHE_KEY].referrers(name, subject, artifact_type)


async def blob(request: web.Request, name: str, digest: str) -> web.StreamResponse | None:
    """An uncached blob of a cache repository, streamed from upstream while it is stored;
    None when the normal path serves it."""
    source = await request.app[CACHE_KEY].blob(name, digest, request.method == "HEAD")
    if source is None:
        return None
    headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
               "ETag": f'"{digest}"'}
    if source.filling is not None:
        assert source.reader is not None
        return await send_filling(request, source.filling, source.reader, headers)
    response = web.StreamResponse(status=200, headers=headers)
    if source.size is not None:
        response.content_length = source.size
    await response.prepare(request)
    if source.chunks is None:
        await response.write_eof()
        return response
    client_gone = False
    try:
        async with contextlib.aclosing(source.chunks) as chunks:
            async for chunk in chunks:
                try:
                    await response.write(chunk)
                except (ConnectionError, RuntimeError):
                    client_gone = True
                    break
    except Exception as exc:
        # Headers are out: cut the connection so the client sees an incomplete body.
        log.warning("pull-through of %s@%s failed mid-transfer: %s", name, digest, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    if not client_gone:
        await response.write_eof()
    return response
