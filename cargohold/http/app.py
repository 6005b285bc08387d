"""Builds the aiohttp application of one worker process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from cargohold.config import Settings
from cargohold.http import auth
from cargohold.http.console.routes import setup_console
from cargohold.http.ecr.operations import OPERATIONS
from cargohold.http.ecr.protocol import make_endpoint
from cargohold.http.errors import add_api_version, error_middleware
from cargohold.http.keys import (
    ACCOUNT_SETTINGS_KEY,
    AUDIT_KEY,
    AUTHORIZER_KEY,
    BLOBS_KEY,
    EVENTS_KEY,
    IDENTITY_KEY,
    IMAGES_KEY,
    MANIFESTS_KEY,
    REGISTRY_POLICY_KEY,
    REPOSITORIES_KEY,
    STORAGE_KEY,
    TEMPLATES_KEY,
    UPLOADS_KEY,
)
from cargohold.http.logging import add_request_id, request_id_middleware
from cargohold.http.metrics import add_metrics_route
from cargohold.http.strict import single_valued_query_middleware
from cargohold.http.v2 import cache as pull_through_cache
from cargohold.http.v2.routes import add_routes
from cargohold.services.account_settings import AccountSettings
from cargohold.services.audit import AuditLog
from cargohold.services.authz import Authorizer
from cargohold.services.blobs import BlobService, UploadService
from cargohold.services.events import EventService
from cargohold.services.events.dispatcher import Dispatcher
from cargohold.services.identity import IdentityService
from cargohold.services.images import ImageService
from cargohold.services.manifests import ManifestService
from cargohold.services.registry_policy import RegistryPolicyService
from cargohold.services.repositories import RepositoryService
from cargohold.services.retention.scheduler import start_retention, stop_retention
from cargohold.services.storage import Storage
from cargohold.services.templates import TemplateService


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
    app = web.Application(middlewares=[request_id_middleware, error_middleware,
                                       auth.auth_middleware],
                          client_max_size=0)
    app.middlewares.append(single_valued_query_middleware)
    storage = Storage.from_settings(settings)
    app[STORAGE_KEY] = storage
    app[BLOBS_KEY] = BlobService(storage)
    app[UPLOADS_KEY] = UploadService(storage)
    app[MANIFESTS_KEY] = ManifestService(storage)
    identity = identity_service(storage)
    app[IDENTITY_KEY] = identity
    app[AUTHORIZER_KEY] = Authorizer(storage.identity, registry_id=identity.registry_id,
                                          region=settings.region, open_access=settings.anonymous)
    audit = AuditLog(storage)
    app[AUDIT_KEY] = audit
    images = ImageService(storage, app[MANIFESTS_KEY])
    app[IMAGES_KEY] = images
    app[REPOSITORIES_KEY] = RepositoryService(storage)
    app[ACCOUNT_SETTINGS_KEY] = AccountSettings(storage)
    app[TEMPLATES_KEY] = TemplateService(storage)
    app[REGISTRY_POLICY_KEY] = RegistryPolicyService(storage, app[AUTHORIZER_KEY])
    events = EventService(storage, settings.notifications)
    app[EVENTS_KEY] = events
    dispatcher = Dispatcher(storage, settings.notifications, region=settings.region,
                            account=identity.registry_id,
                            source={"addr": f"{settings.host}:{settings.port}",
                                    "instanceID": identity.registry_id})

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        audit.start()
        images.pulls.start()
        events.pulls.start()
        dispatcher.start()
        purge = asyncio.get_running_loop().create_task(app[UPLOADS_KEY].purge_periodically(
            settings.upload_session_ttl_hours * 3600, every=3600))
        retention = start_retention(storage)
        yield
        await stop_retention(retention)
        purge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purge
        await dispatcher.stop()
        await events.pulls.stop()
        await images.pulls.stop()
        await audit.stop()
        storage.close()

    app.cleanup_ctx.append(lifecycle)
    pull_through_cache.install(app, storage)
    app.on_response_prepare.append(add_api_version)
    app.on_response_prepare.append(add_request_id)
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app)
    add_routes(app)
    app.router.add_post("/", make_endpoint(OPERATIONS))
    setup_console(app)
    return app
