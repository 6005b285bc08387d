"""Administration: users and access keys, the audit log, and registry-wide settings.

Users and keys are IAM-style actions checked by the one Authorizer (`iam:*`); registry
settings go through ECR operations by name (see `ecr_adapter`), shown as "not available on this
server" where this build lacks them.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from cargohold.http.console.ecr_adapter import NotAvailable, available, invoke
from cargohold.http.console.render import may, render
from cargohold.http.console.session import BROWSE_KEY, redirect
from cargohold.http.keys import AUDIT_KEY, IDENTITY_KEY, STORAGE_KEY
from cargohold.storage.identity import AuditEvent, UserExists, UserNotFound
from cargohold.storage.metadata import now_us
from cargohold.wire.ecr import EcrError

USER_ACTIONS = {"create_user": "iam:CreateUser", "delete_user": "iam:DeleteUser",
                "create_key": "iam:CreateAccessKey", "deactivate_key": "iam:UpdateAccessKey",
                "activate_key": "iam:UpdateAccessKey", "delete_key": "iam:DeleteAccessKey"}
AUDIT_ACTION = "cloudtrail:LookupEvents"
REGISTRY_OPS = ("GetRegistryPolicy", "PutRegistryPolicy", "DeleteRegistryPolicy",
                "DescribeRepositoryCreationTemplates", "CreateRepositoryCreationTemplate",
                "DeleteRepositoryCreationTemplate", "GetAccountSetting", "PutAccountSetting")


async def _require(request: web.Request, action: str) -> None:
    if not await may(request, action, None):
        raise web.HTTPForbidden(text="Administrators only.")


async def users_page(request: web.Request, secret: dict[str, str] | None = None,
                     error: str = "", status: int = 200) -> web.Response:
    await _require(request, "iam:ListUsers")
    store = request.app[STORAGE_KEY].identity
    storage = request.app[STORAGE_KEY]
    users = await storage.read(store.list_users)
    keys = await storage.read(store.list_access_keys, None)
    by_user: dict[str, list[Any]] = {}
    for key in keys:
        by_user.setdefault(key.user_name, []).append(key)
    return await render(request, "admin_users.html", {
        "users": users, "keys": by_user, "secret": secret, "error": error,
        "section": "users"}, status=status)


async def users_get(request: web.Request) -> web.StreamResponse:
    return await users_page(request)


def _record(request: web.Request, action: str, detail: str, outcome: str = "allowed") -> None:
    principal = request["console"].principal
    request.app[AUDIT_KEY].record(AuditEvent(
        at=now_us(), principal=principal.name, access_key_id=principal.access_key_id,
        action=action, repository=None, outcome=outcome, status=200, remote=request.remote,
        detail=detail[:500]))


async def users_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    op = str(form.get("op", ""))
    action = USER_ACTIONS.get(op)
    if action is None:
        raise web.HTTPBadRequest(text="unknown operation")
    if not await may(request, action, None):
        _record(request, action, "console: refused", "denied")
        raise web.HTTPForbidden(text="Administrators only.")
    identity = request.app[IDENTITY_KEY]
    storage = request.app[STORAGE_KEY]
    store = storage.identity
    user = str(form.get("user", "")).strip()
    key_id = str(form.get("key", ""))
    try:
        if op == "create_user":
            password = str(form.get("password", "")) or None
            await storage.db(identity.create_user, user, password=password,
                             administrator=form.get("admin") == "on")
            new = await storage.db(identity.create_access_key, user)
            _record(request, action, f"console: user {user}")
            return await users_page(request, secret={"user": user, "id": new.id,
                                                     "secret": new.secret})
        if op == "create_key":
            new = await storage.db(identity.create_access_key, user)
            _record(request, action, f"console: key {new.id} for {user}")
            return await users_page(request, secret={"user": user, "id": new.id,
                                                     "secret": new.secret})
        if op == "delete_user":
            if user == request["console"].principal.name:
                raise ValueError("You cannot delete the user you are signed in as.")
            if not await storage.db(store.delete_user, user):
                raise ValueError(f"no user {user!r}")
            message = f"User {user} deleted."
        elif op in ("deactivate_key", "activate_key"):
            status = "Inactive" if op == "deactivate_key" else "Active"
            if not await storage.db(store.set_access_key_status, key_id, status):
                raise ValueError(f"no access key {key_id!r}")
            message = f"Access key {key_id} is now {status}."
        else:
            if not await storage.db(store.delete_access_key, key_id):
                raise ValueError(f"no access key {key_id!r}")
            message = f"Access key {key_id} deleted."
    except (ValueError, UserExists, UserNotFound) as exc:
        return await users_page(request, error=str(exc) or type(exc).__name__, status=400)
    _record(request, action, f"console: {message}")
    return redirect("/console/admin/users?flash=" + quote(message))


async def audit_page(request: web.Request) -> web.StreamResponse:
    await _require(request, AUDIT_ACTION)
    query = request.query
    filters = {key: query.get(key, "").strip()[:255] for key in ("user", "action", "repository")}
    storage = request.app[STORAGE_KEY]
    events = await storage.read(request.app[BROWSE_KEY].audit, principal=filters["user"],
                                action=filters["action"], repository=filters["repository"],
                                limit=200)
    return await render(request, "admin_audit.html", {"events": events, "filters": filters,
                                                      "section": "audit"})


async def _get(request: web.Request, name: str, params: dict[str, Any]
               ) -> tuple[dict[str, Any] | None, str]:
    try:
        return await invoke(request, request["console"].principal, name, params), ""
    except NotAvailable:
        return None, "not available on this server"
    except EcrError as exc:
        return None, exc.name


async def registry_page(request: web.Request, error: str = "", status: int = 200
                        ) -> web.Response:
    await _require(request, "iam:ListUsers")
    policy, policy_error = await _get(request, "GetRegistryPolicy", {})
    templates, templates_error = await _get(request, "DescribeRepositoryCreationTemplates", {})
    mounting, mounting_error = await _get(request, "GetAccountSetting",
                                          {"name": "BLOB_MOUNTING"})
    text = (policy or {}).get("policyText", "")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2) if text else ""
    return await render(request, "admin_registry.html", {
        "section": "registry", "error": error, "policy": text,
        "policy_error": "" if policy_error == "RegistryPolicyNotFoundException"
        else policy_error,
        "templates": (templates or {}).get("repositoryCreationTemplates", []),
        "templates_error": templates_error,
        "mounting": (mounting or {}).get("value", ""), "mounting_error": mounting_error,
        "available": {op: available(op) for op in REGISTRY_OPS}}, status=status)


async def registry_get(request: web.Request) -> web.StreamResponse:
    return await registry_page(request)


async def registry_post(request: web.Request) -> web.StreamResponse:
    await _require(request, "iam:ListUsers")
    form = await request.post()
    op = str(form.get("op", ""))
    principal = request["console"].principal
    try:
        if op == "put_policy":
            text = str(form.get("policy", ""))
            try:
                document = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"the registry policy is not valid JSON: {exc}") from None
            if not isinstance(document, dict):
                raise ValueError("the registry policy must be a JSON object")
            await invoke(request, principal, "PutRegistryPolicy", {"policyText": text.strip()})
        elif op == "delete_policy":
            await invoke(request, principal, "DeleteRegistryPolicy", {})
        elif op == "create_template":
            applied = [v for v in ("CREATE_ON_PUSH", "PULL_THROUGH_CACHE", "REPLICATION")
                       if form.get(f"applied_{v}") == "on"] or ["CREATE_ON_PUSH"]
            params: dict[str, Any] = {
                "prefix": str(form.get("prefix", "")).strip(), "appliedFor": applied,
                "imageTagMutability": str(form.get("mutability", "MUTABLE"))}
            if form.get("description"):
                params["description"] = str(form.get("description"))[:256]
            await invoke(request, principal, "CreateRepositoryCreationTemplate", params)
        elif op == "delete_template":
            await invoke(request, principal, "DeleteRepositoryCreationTemplate",
                         {"prefix": str(form.get("prefix", ""))})
        elif op == "blob_mounting":
            value = "ENABLED" if form.get("value") == "ENABLED" else "DISABLED"
            await invoke(request, principal, "PutAccountSetting",
                         {"name": "BLOB_MOUNTING", "value": value})
        else:
            raise ValueError("unknown operation")
    except NotAvailable as exc:
        return await registry_page(request, f"{exc} is not available on this server", 400)
    except EcrError as exc:
        return await registry_page(request, f"{exc.name}: {exc.message}", 400)
    except ValueError as exc:
        return await registry_page(request, str(exc), 400)
    return redirect("/console/admin/registry?flash=" + quote("Saved."))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/admin", lambda request: _to_users())
    router.add_get("/console/admin/users", users_get)
    router.add_post("/console/admin/users", users_post)
    router.add_get("/console/admin/audit", audit_page)
    router.add_get("/console/admin/registry", registry_get)
    router.add_post("/console/admin/registry", registry_post)


async def _to_users() -> web.StreamResponse:
    return redirect("/console/admin/users")
