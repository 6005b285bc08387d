"""Builds the aiohttp application of one worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from cargohold.config import Settings
from cargohold.http import auth
from cargohold.http.errors import add_api_version, error_middleware
from cargohold.http.v2.common import BLOBS_KEY, MANIFESTS_KEY, UPLOADS_KEY
from cargohold.http.v2.routes import add_routes
from cargohold.services.audit import AuditLog
from cargohold.services.authz import Authorizer
from cargohold.services.blobs import BlobService, UploadService
from cargohold.services.identity import IdentityService
from cargohold.services.manifests import ManifestService
from cargohold.services.storage import Storage

STORAGE_KEY = web.AppKey("storage", Storage)


async def healthz(request: web.Request) -> web.Response:
    """Database and blob-store health, for load balancers and operators."""
    report = await request.app[STORAGE_KEY].health()
    healthy = all(part["status"] == "ok" for part in report.values())
    return web.json_response({"status": "ok" if healthy else "error", **report},
                             status=200 if healthy else 503)


def identity_service(storage: Storage) -> IdentityService:
    settings = storage.settings
    return IdentityService(storage.identity, storage.keys, service=settings.service_name,
                           region=settings.region)


def create_app(settings: Settings) -> web.Application:
    # No client_max_size cap: blob bodies are streamed, manifests are bounded by their handler.
    app = web.Application(middlewares=[error_middleware, auth.auth_middleware],
                          client_max_size=0)
    storage = Storage.from_settings(settings)
    app[STORAGE_KEY] = storage
    app[auth.AUTH_STORAGE_KEY] = storage
    app[BLOBS_KEY] = BlobService(storage)
    app[UPLOADS_KEY] = UploadService(storage)
    app[MANIFESTS_KEY] = ManifestService(storage)
    identity = identity_service(storage)
    app[auth.IDENTITY_KEY] = identity
    app[auth.AUTHORIZER_KEY] = Authorizer(storage.identity, registry_id=identity.registry_id,
                                          region=settings.region, open_access=settings.anonymous)
    audit = AuditLog(storage, storage.identity)
    app[auth.AUDIT_KEY] = audit

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        audit.start()
        yield
        await audit.stop()
        storage.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(add_api_version)
    app.router.add_get("/healthz", healthz)
    add_routes(app)
    return app
