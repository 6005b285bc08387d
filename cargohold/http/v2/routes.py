"""The `/v2` route table: every endpoint of the distribution spec, in one place."""

from __future__ import annotations

from aiohttp import web

from cargohold.http.v2 import blobs, manifests


async def api_version(request: web.Request) -> web.Response:
    return web.json_response({})


def add_routes(app: web.Application) -> None:
    """Register the distribution API. Specific paths first: names may contain slashes."""
    r = app.router
    r.add_get("/v2/", api_version)
    r.add_get("/v2", api_version)
    r.add_get("/v2/_catalog", manifests.catalog)
    for suffix in ("/blobs/uploads/", "/blobs/uploads"):
        r.add_post("/v2/{name:.+}" + suffix, blobs.start_upload)
    upload = "/v2/{name:.+}/blobs/uploads/{upload_id}"
    r.add_get(upload, blobs.upload_status, allow_head=False)
    r.add_patch(upload, blobs.patch_upload)
    r.add_put(upload, blobs.finish_upload)
    r.add_delete(upload, blobs.cancel_upload)
    blob = "/v2/{name:.+}/blobs/{digest}"
    r.add_get(blob, blobs.get_blob)
    r.add_delete(blob, blobs.delete_blob)
    manifest = "/v2/{name:.+}/manifests/{reference}"
    r.add_get(manifest, manifests.get_manifest)
    r.add_put(manifest, manifests.put_manifest)
    r.add_delete(manifest, manifests.delete_manifest)
    r.add_get("/v2/{name:.+}/tags/list", manifests.list_tags)
    r.add_get("/v2/{name:.+}/referrers/{digest}", manifests.referrers)
