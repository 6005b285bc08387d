"""The `/v2` route table: every endpoint of the distribution spec and the ECR action it needs."""

from __future__ import annotations

from aiohttp import web

from cargohold.http import auth
from cargohold.http.auth import guarded
from cargohold.http.v2 import blobs, manifests, referrers
from cargohold.services import actions as ecr


async def api_version(request: web.Request) -> web.Response:
    auth.require_login(request)
    return web.json_response({})


def add_routes(app: web.Application) -> None:
    """Register the distribution API. Specific paths first: names may contain slashes."""
    r = app.router
    r.add_get("/v2/", api_version)
    r.add_get("/v2", api_version)
    r.add_route("GET", auth.TOKEN_PATH, auth.token)
    r.add_route("POST", auth.TOKEN_PATH, auth.token)
    r.add_get("/v2/_catalog", manifests.catalog)
    start_upload = guarded(ecr.INITIATE_UPLOAD, blobs.start_upload)
    for suffix in ("/blobs/uploads/", "/blobs/uploads"):
        r.add_post("/v2/{name:.+}" + suffix, start_upload)
    upload = "/v2/{name:.+}/blobs/uploads/{upload_id}"
    r.add_get(upload, guarded(ecr.UPLOAD_PART, blobs.upload_status), allow_head=False)
    r.add_patch(upload, guarded(ecr.UPLOAD_PART, blobs.patch_upload))
    r.add_put(upload, guarded(ecr.COMPLETE_UPLOAD, blobs.finish_upload))
    r.add_delete(upload, guarded(ecr.UPLOAD_PART, blobs.cancel_upload))
    blob = "/v2/{name:.+}/blobs/{digest}"
    r.add_get(blob, guarded({"GET": ecr.GET_DOWNLOAD_URL, "HEAD": ecr.CHECK_LAYERS},
                            blobs.get_blob))
    r.add_delete(blob, guarded(ecr.DELETE_IMAGE, blobs.delete_blob))
    manifest = "/v2/{name:.+}/manifests/{reference}"
    r.add_get(manifest, guarded(ecr.BATCH_GET_IMAGE, manifests.get_manifest))
    r.add_put(manifest, guarded(ecr.PUT_IMAGE, manifests.put_manifest))
    r.add_delete(manifest, guarded(ecr.DELETE_IMAGE, manifests.delete_manifest))
    r.add_get("/v2/{name:.+}/tags/list", guarded(ecr.BATCH_GET_IMAGE, manifests.list_tags))
    r.add_get("/v2/{name:.+}/referrers/{digest}",
              guarded(ecr.BATCH_GET_IMAGE, referrers.referrers))
