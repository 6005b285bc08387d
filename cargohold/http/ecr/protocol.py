"""The AWS JSON 1.1 protocol of the ECR API: `POST /` with `X-Amz-Target`, SigV4, JSON errors.

Each request is verified (signature, key), parsed, validated against botocore's model,
authorised with the one `Authorizer` (action `ecr:<Operation>`), then dispatched.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cargohold.http.ecr.sigv4 import SignedRequest, verify
from cargohold.http.keys import AUDIT_KEY, AUTHORIZER_KEY, IDENTITY_KEY, STORAGE_KEY
from cargohold.services.identity import AuthenticationFailed, Principal
from cargohold.storage.identity import AuditEvent
from cargohold.storage.metadata import now_us
from cargohold.wire.ecr import (
    JSON_CONTENT_TYPE,
    TARGET_PREFIX,
    EcrError,
    operation,
    validate_request,
)

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024 * 1024  # UploadLayerPart carries a base64 part inside the JSON document
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck")


@dataclass(frozen=True, slots=True)
class Call:
    """One ECR API call: who made it, with which key, and where the registry is."""

    request: web.Request
    principal: Principal
    access_key_id: str
    registry_id: str
    region: str

    @property
    def host(self) -> str:
        configured = self.request.app[STORAGE_KEY].settings.public_url
        if configured:
            return configured.split("://", 1)[-1].rstrip("/")
        return self.request.host

    @property
    def base_url(self) -> str:
        configured = self.request.app[STORAGE_KEY].settings.public_url
        return configured.rstrip("/") if configured else (
            f"{self.request.scheme}://{self.request.host}")


Operation = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]
# The repositories an operation acts on, each authorised on its own ARN ("*" stands for all of
# them: `repository/*`). None: a registry-wide action, authorised on the resource "*".
RepositoriesOf = Callable[[dict[str, Any]], list[str] | None]


@dataclass(frozen=True, slots=True)
class OperationSpec:
    handler: Operation
    repositories: RepositoriesOf
    # The IAM action authorised, when ECR documents another than `ecr:<Operation>`.
    action: str | None = None


def named_repository(params: dict[str, Any]) -> list[str] | None:
    """The resource of an operation on one repository: its `repositoryName`."""
    return [params["repositoryName"]]


def registry_wide(params: dict[str, Any]) -> list[str] | None:
    """The resource of a registry-level operation: the registry, no repository."""
    return None


def repository_ids(call: Call, name: str) -> dict[str, Any]:
    """The `registryId` and `repositoryName` members most responses start with."""
    return {"registryId": call.registry_id, "repositoryName": name}


def _response(status: int, body: dict[str, Any], request_id: str) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type=JSON_CONTENT_TYPE,
                        headers={"x-amzn-RequestId": request_id})


def _secret_lookup(request: web.Request) -> Callable[[str], str | None]:
    identity = request.app[IDENTITY_KEY]

    def secret_for(key_id: str) -> str | None:
        try:
            return identity.access_key_secret(identity.active_key(key_id))
        except AuthenticationFailed:
            return None

    return secret_for


def make_endpoint(operations: dict[str, OperationSpec]) -> Callable[[web.Request],
                                                                     Awaitable[web.Response]]:
    async def endpoint(request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        name = None
        principal: Principal | None = None
        try:
            target = request.headers.get("X-Amz-Target", "")
            prefix, _, name = target.partition(".")
            if prefix != TARGET_PREFIX or not name:
                raise EcrError("UnknownOperationException",
                               f"unknown target {target!r}" if target else "missing X-Amz-Target")
            body = await _read_body(request)
            storage = request.app[STORAGE_KEY]
            signed = SignedRequest(request.method, request.host, request.path,
                                   request.query_string, request.headers, body)
            key_id = await storage.db(verify, signed, _secret_lookup(request))
            identity = request.app[IDENTITY_KEY]
            record = await storage.db(identity.active_key, key_id)
            principal = Principal(record.user_id, record.user_name, record.id, "sigv4")
            model = operation(name)
            try:
                params = json.loads(body) if body.strip() else {}
            except (ValueError, RecursionError):
                raise EcrError("SerializationException", "the request body is not valid JSON"
                               ) from None
            validate_request(model, params)
            spec = operations.get(name)
            if spec is None:
                raise EcrError("UnsupportedOperationException",
                               f"{name} is not supported by this registry")
            authorizer = request.app[AUTHORIZER_KEY]
            registry_id = authorizer.registry_id
            if params.get("registryId") not in (None, registry_id):
                raise EcrError("InvalidParameterException",
                               f"registry {params['registryId']} is not this registry "
                               f"({registry_id})")
            if name == "GetAuthorizationToken" and any(
                    other != registry_id for other in params.get("registryIds", [])):
                raise EcrError("InvalidParameterException",
                               f"registryIds may only name this registry ({registry_id})")
            targets = spec.repositories(params)
            request["repository"] = targets[0] if targets else None
            action = spec.action or f"ecr:{name}"
            for target in targets if targets is not None else [None]:
                if not await storage.db(authorizer.is_allowed, principal, action, target):
                    resource = authorizer.repository_arn(target) if target else "*"
                    raise EcrError("AccessDeniedException",
                                   f"User: {identity.user_arn(principal.name or '')} is not "
                                   f"authorized to perform: {action} on resource: {resource}",
                                   400)
            call = Call(request, principal, key_id, registry_id, authorizer.region)
            result = await spec.handler(call, params)
        except EcrError as exc:
            _audit(request, name, principal, exc)
            return _response(exc.status, exc.body(), request_id)
        except Exception:
            log.exception("ECR %s failed", name)
            return _response(500, {"__type": "ServerException",
                                   "message": "internal server error"}, request_id)
        if name and not name.startswith(READ_ONLY_PREFIXES):
            _audit(request, name, principal, None)
        return _response(200, result, request_id)

    return endpoint


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise EcrError("InvalidParameterException", "request body too large", 413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > MAX_BODY:
            raise EcrError("InvalidParameterException", "request body too large", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _audit(request: web.Request, name: str | None, principal: Principal | None,
           error: EcrError | None) -> None:
    if error is None:
        outcome, status, detail = "allowed", 200, None
    elif error.name in ("AccessDeniedException",):
        outcome, status, detail = "denied", error.status, error.message
    elif principal is None:
        outcome, status, detail = "unauthenticated", error.status, error.name
    elif name and name.startswith(READ_ONLY_PREFIXES):
        return
    else:
        outcome, status, detail = "failed", error.status, error.name
    request.app[AUDIT_KEY].record(AuditEvent(
        at=now_us(), principal=principal.name if principal else None,
        access_key_id=principal.access_key_id if principal else None,
        action=f"ecr:{name}" if name else "ecr:?", repository=request.get("repository"),
        outcome=outcome, status=status, remote=request.remote, detail=detail))
