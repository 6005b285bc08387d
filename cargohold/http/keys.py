"""The services one worker's application holds, under typed keys (the HTTP layer's wiring)."""

from __future__ import annotations

from aiohttp import web

from cargohold.services.account_settings import AccountSettings
from cargohold.services.audit import AuditLog
from cargohold.services.authz import Authorizer
from cargohold.services.blobs import BlobService, UploadService
from cargohold.services.events import EventService
from cargohold.services.identity import IdentityService
from cargohold.services.images import ImageService
from cargohold.services.manifests import ManifestService
from cargohold.services.registry_policy import RegistryPolicyService
from cargohold.services.repositories import RepositoryService
from cargohold.services.storage import Storage
from cargohold.services.templates import TemplateService

STORAGE_KEY = web.AppKey("storage", Storage)
BLOBS_KEY = web.AppKey("blobs", BlobService)
UPLOADS_KEY = web.AppKey("uploads", UploadService)
MANIFESTS_KEY = web.AppKey("manifests", ManifestService)
IMAGES_KEY = web.AppKey("images", ImageService)
REPOSITORIES_KEY = web.AppKey("repositories", RepositoryService)
IDENTITY_KEY = web.AppKey("identity", IdentityService)
AUTHORIZER_KEY = web.AppKey("authorizer", Authorizer)
AUDIT_KEY = web.AppKey("audit", AuditLog)
ACCOUNT_SETTINGS_KEY = web.AppKey("account_settings", AccountSettings)
TEMPLATES_KEY = web.AppKey("templates", TemplateService)
REGISTRY_POLICY_KEY = web.AppKey("registry_policy", RegistryPolicyService)
EVENTS_KEY = web.AppKey("events", EventService)
