"""Builds the aiohttp application of one worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from cargohold.config import Settings
from cargohold.http.errors import add_api_version, error_middleware
from cargohold.http.v2.common import BLOBS_KEY, MANIFESTS_KEY, UPLOADS_KEY
from cargohold.http.v2.routes import add_routes
from cargohold.services.blobs import BlobService, UploadService
from cargohold.services.manifests import ManifestService
from cargohold.services.storage import Storage

STORAGE_KEY = web.AppKey("storage", Storage)


async def healthz(request: web.Request) -> web.Response:
    """Database and blob-store health, for load balancers and operators."""
    report = await request.app[STORAGE_KEY].health()
    healthy = all(part["status"] == "ok" for part in report.values())
    return web.json_response({"status": "ok" if healthy else "error", **report},
                             status=200 if healthy else 503)


def create_app(settings: Settings) -> web.Application:
    # No client_max_size cap: blob bodies are streamed, manifests are bounded by their handler.
    app = web.Application(middlewares=[error_middleware], client_max_size=0)
    storage = Storage.from_settings(settings)
    app[STORAGE_KEY] = storage
    app[BLOBS_KEY] = BlobService(storage)
    app[UPLOADS_KEY] = UploadService(storage)
    app[MANIFESTS_KEY] = ManifestService(storage)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        storage.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(add_api_version)
    app.router.add_get("/healthz", healthz)
    add_routes(app)
    return app
