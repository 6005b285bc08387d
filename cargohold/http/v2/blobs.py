"""Blob pulls and deletes, and upload sessions (end-2, end-4 … end-6, end-10, end-11, end-13)."""

from __future__ import annotations

from aiohttp import web

from cargohold.http.auth import authorize
from cargohold.http.blobresponse import send_file, send_stream
from cargohold.http.keys import (
    ACCOUNT_SETTINGS_KEY,
    AUTHORIZER_KEY,
    BLOBS_KEY,
    STORAGE_KEY,
    UPLOADS_KEY,
)
from cargohold.http.v2 import cache
from cargohold.http.v2.common import (
    body_stream,
    chunk_range,
    content_length,
    repository_name,
)
from cargohold.services.actions import COMPLETE_UPLOAD, UPLOAD_PART
from cargohold.services.blobs import UploadState
from cargohold.services.mounts import mount
from cargohold.storage.blobstore import BlobMissing
from cargohold.wire.digest import parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository_name(request)
    fetched = await cache.blob(request, name, request.match_info["digest"])
    if fetched is not None:
        return fetched
    storage = request.app[STORAGE_KEY]
    settings = storage.settings.blob_store
    # A GET trusts the recorded size: a proxied one reads the bytes right away (and answers
    # BLOB_UNKNOWN if they are gone), a redirected one hands the client to the store, which
    # says so itself; no existence check before either (a round trip to S3). A HEAD checks.
    blobs = request.app[BLOBS_KEY]
    digest, location = await blobs.locate(name, request.match_info["digest"],
                                          check=request.method != "GET")
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    if location.path is not None:
        return await send_file(request, location.path, location.size, headers)
    if settings.redirect and request.method == "GET":
        url = storage.blobs.presign(str(digest), settings.redirect_expiry_seconds)
        if url is not None:
            # As the CNCF registry's redirect option: the store serves the bytes itself.
            return web.Response(status=307, headers={
                "Location": url, "Docker-Content-Digest": str(digest), "Content-Length": "0"})
    try:
        return await send_stream(
            request, lambda start, stop: storage.blobs.read(str(digest), start, stop),
            location.size, headers, storage.blobs.raw_opener(str(digest)))
    except BlobMissing:
        raise blobs.missing(digest) from None


async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    await request.app[BLOBS_KEY].delete(name, request.match_info["digest"])
    return web.Response(status=202, headers={"Content-Length": "0"})


def _upload_response(name: str, state: UploadState, status: int) -> web.Response:
    return web.Response(status=status, headers={
        "Location": f"/v2/{name}/blobs/uploads/{state.upload_id}",
        "Range": f"0-{max(state.size - 1, 0)}",
        "Docker-Upload-UUID": state.upload_id,
        "Content-Length": "0",
    })


def _created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{digest}",
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    })


async def start_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    uploads = request.app[UPLOADS_KEY]
    query = request.query
    if "mount" in query:
        # Mounting reads the source (named by `from`, or discovered): without pull access
        # there, or with mounting disabled, fall back to an upload.
        if await mount(uploads, request.app[AUTHORIZER_KEY], request.app[ACCOUNT_SETTINGS_KEY],
                       request["principal"], name, query["mount"], query.get("from")):
            return _created(name, str(parse_digest(query["mount"])))
        return _upload_response(name, await uploads.start(name), 202)
    if "digest" in query:
        # A single-request upload is also the part and the completion.
        await authorize(request, UPLOAD_PART, name)
        await authorize(request, COMPLETE_UPLOAD, name)
        digest, _ = await uploads.upload_whole(name, query["digest"], body_stream(request),
                                               content_length(request))
        return _created(name, str(digest))
    algorithm = query.get("digest-algorithm", "sha256")
    return _upload_response(name, await uploads.start(name, algorithm), 202)


async def upload_status(request: web.Request) -> web.Response:
    name = repository_name(request)
    state = await request.app[UPLOADS_KEY].status(name, request.match_info["upload_id"])
    return _upload_response(name, state, 204)


async def patch_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    state = await request.app[UPLOADS_KEY].append(
        name, request.match_info["upload_id"], body_stream(request), chunk_range(request),
        content_length(request))
    return _upload_response(name, state, 202)


async def finish_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = request.query.get("digest")
    if not digest:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required")
    body = body_stream(request) if request.body_exists else None
    if body is not None:
        await authorize(request, UPLOAD_PART, name)  # the final PUT carries a part
    completed, _ = await request.app[UPLOADS_KEY].complete(
        name, request.match_info["upload_id"], digest, body, chunk_range(request),
        content_length(request))
    return _created(name, str(completed))


async def cancel_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    await request.app[UPLOADS_KEY].cancel(name, request.match_info["upload_id"])
    return web.Response(status=204)
