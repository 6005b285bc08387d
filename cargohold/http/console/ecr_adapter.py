"""The console's way into the ECR API: invoke an operation by name, in-process.

It goes through `OPERATIONS` with the checks the `POST /` endpoint makes (model validation,
the one Authorizer on every repository the operation names, the audit log), so the console can
never do more than the same user could with `aws ecr`. An operation this server lacks (lifecycle
policies, the registry policy, creation templates, account settings, until their branches
land) raises `NotAvailable`, and the page says so.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cargohold.http.ecr.operations import OPERATIONS
from cargohold.http.ecr.protocol import Call
from cargohold.http.keys import AUDIT_KEY, AUTHORIZER_KEY, STORAGE_KEY
from cargohold.services.identity import Principal
from cargohold.storage.identity import AuditEvent
from cargohold.storage.metadata import now_us
from cargohold.wire.ecr import EcrError, operation, validate_request

READ_ONLY_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck")


class NotAvailable(Exception):
    """This server does not serve that ECR operation."""


def available(name: str) -> bool:
    return name in OPERATIONS


async def allowed(request: web.Request, principal: Principal, name: str,
                  params: dict[str, Any]) -> bool:
    """Whether `invoke` would pass authorisation (to show or hide a button)."""
    spec = OPERATIONS.get(name)
    if spec is None:
        return False
    authorizer = request.app[AUTHORIZER_KEY]
    storage = request.app[STORAGE_KEY]
    for target in spec.repositories(params) or [None]:
        if not await storage.read(authorizer.is_allowed, principal, f"ecr:{name}", target):
            return False
    return True


async def invoke(request: web.Request, principal: Principal, name: str,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Run ECR operation `name` as `principal`; EcrError on refusal or bad input."""
    spec = OPERATIONS.get(name)
    if spec is None:
        raise NotAvailable(name)
    authorizer = request.app[AUTHORIZER_KEY]
    storage = request.app[STORAGE_KEY]
    targets = None
    try:
        validate_request(operation(name), params)
        targets = spec.repositories(params)
        for target in targets if targets is not None else [None]:
            if not await storage.db(authorizer.is_allowed, principal, f"ecr:{name}", target):
                resource = authorizer.repository_arn(target) if target else "*"
                raise EcrError("AccessDeniedException",
                               f"not authorized to perform ecr:{name} on {resource}", 400)
        call = Call(request, principal, principal.access_key_id or "", authorizer.registry_id,
                    authorizer.region)
        result = await spec.handler(call, params)
    except EcrError as exc:
        if exc.name == "AccessDeniedException" or not name.startswith(READ_ONLY_PREFIXES):
            _audit(request, principal, name, targets,
                   "denied" if exc.name == "AccessDeniedException" else "failed",
                   exc.status, exc.message if exc.name == "AccessDeniedException" else exc.name)
        raise
    if not name.startswith(READ_ONLY_PREFIXES):
        _audit(request, principal, name, targets, "allowed", 200, "console")
    return result


def _audit(request: web.Request, principal: Principal, name: str, targets: list[str] | None,
           outcome: str, status: int, detail: str | None) -> None:
    request.app[AUDIT_KEY].record(AuditEvent(
        at=now_us(), principal=principal.name, access_key_id=principal.access_key_id,
        action=f"ecr:{name}", repository=targets[0] if targets else None, outcome=outcome,
        status=status, remote=request.remote, detail=detail))
