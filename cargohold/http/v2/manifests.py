"""Manifests (end-3, end-7, end-9), tag listing (end-8) and the catalog."""

from __future__ import annotations

from aiohttp import web

from cargohold.http.auth import require_login
from cargohold.http.keys import (
    AUTHORIZER_KEY,
    EVENTS_KEY,
    IMAGES_KEY,
    MANIFESTS_KEY,
    STORAGE_KEY,
)
from cargohold.http.v2 import cache
from cargohold.http.v2.common import (
    page_size,
    paginated,
    repository_name,
)
from cargohold.services import metrics
from cargohold.services.manifests import manifest_too_large

CATALOG_BATCH = 1000


async def get_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    record = await cache.manifest(request, name, request.match_info["reference"])
    headers = {
        "Content-Type": record.media_type,
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
        "Content-Length": str(record.size),
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and record.digest in if_none_match:
        return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                 if k != "Content-Length"})
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    request.app[IMAGES_KEY].note_pull(name, record.digest)
    metrics.labelled(metrics.MANIFESTS_PULLED, metrics.artifact_kind_of(
        record.digest, record.media_type, record.content)).inc()
    reference = request.match_info["reference"]
    request.app[EVENTS_KEY].note_pull(name, record, None if ":" in reference else reference)
    return web.Response(status=200, body=record.content, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise manifest_too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise manifest_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def put_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    service = request.app[MANIFESTS_KEY]
    content = await _read_limited(request, service.storage.settings.max_manifest_size)
    extra_tags = request.query.getall("tag", [])
    result = await service.put(name, request.match_info["reference"], content,
                               request.headers.get("Content-Type"), extra_tags)
    response = web.Response(status=201, headers={
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": result.digest,
        "Content-Length": "0",
    })
    if result.subject:
        response.headers["OCI-Subject"] = result.subject
    for tag in extra_tags:
        response.headers.add("OCI-Tag", tag)
    return response


async def delete_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    await request.app[MANIFESTS_KEY].delete(name, request.match_info["reference"])
    return web.Response(status=202, headers={"Content-Length": "0"})


async def list_tags(request: web.Request) -> web.Response:
    name = repository_name(request)
    limit = page_size(request)
    if limit == 0:
        # Still refuse an unknown repository.
        await request.app[MANIFESTS_KEY].tags(name, None, 0)
        return web.json_response({"name": name, "tags": []})
    fetch = None if limit is None else limit + 1
    names = await request.app[MANIFESTS_KEY].tags(name, request.query.get("last"), fetch)
    return paginated(request, "tags", names, limit, {"name": name})


async def catalog(request: web.Request) -> web.Response:
    """Repositories the caller may see, a page at a time."""
    require_login(request)
    limit = page_size(request)
    if limit == 0:
        return web.json_response({"repositories": []})
    storage = request.app[STORAGE_KEY]
    authorizer = request.app[AUTHORIZER_KEY]
    wanted = None if limit is None else limit + 1
    last = request.query.get("last")
    shown: list[str] = []
    # Filtering may drop names, so read in batches until the page is full or the list ends.
    while wanted is None or len(shown) < wanted:
        batch = await request.app[MANIFESTS_KEY].catalog(last, CATALOG_BATCH)
        if not batch:
            break
        shown += await storage.db(authorizer.visible, request["principal"], batch)
        last = batch[-1]
        if len(batch) < CATALOG_BATCH:
            break
    if wanted is not None:
        shown = shown[:wanted]
    return paginated(request, "repositories", shown, limit, {})
