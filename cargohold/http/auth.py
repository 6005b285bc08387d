"""Authentication and authorisation of `/v2`: Basic, Bearer tokens, the token endpoint, audit.

Every `/v2` route is wrapped by `guarded(action, handler)`, which asks the one `Authorizer` whether
the caller may perform that ECR action on the route's repository. A refusal is 401 UNAUTHORIZED
with a Bearer challenge for an anonymous caller and 403 DENIED for an authenticated one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cargohold.http.keys import AUDIT_KEY, AUTHORIZER_KEY, IDENTITY_KEY, STORAGE_KEY
from cargohold.http.v2.common import repository_name
from cargohold.services.actions import scope_of
from cargohold.services.identity import ANONYMOUS, AuthenticationFailed, Principal
from cargohold.storage.identity import AuditEvent
from cargohold.storage.metadata import now_us
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.names import NAME_PATTERN

TOKEN_PATH = "/v2/token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _base_url(request: web.Request) -> str:
    configured = request.app[STORAGE_KEY].settings.public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def challenge(request: web.Request, scope: str | None = None, error: str | None = None) -> str:
    service = request.app[IDENTITY_KEY].service
    value = f'Bearer realm="{_base_url(request)}{TOKEN_PATH}",service="{service}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def unauthorized(request: web.Request, message: str, scope: str | None = None,
                 error: str | None = None) -> RegistryError:
    return RegistryError(ErrorCode.UNAUTHORIZED, message,
                         headers={"WWW-Authenticate": challenge(request, scope, error)})


def _basic_credentials(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise AuthenticationFailed("malformed Basic credentials")
    return user, password


_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")


def _presigned(request: web.Request, signature: str) -> Principal:
    """A presigned download URL: pull access to exactly one blob, GET or HEAD only."""
    match = _BLOB_PATH.match(request.path)
    if request.method not in ("GET", "HEAD") or match is None:
        raise AuthenticationFailed("a download URL signature is only valid for its blob")
    return request.app[IDENTITY_KEY].verify_presigned_blob(
        match["name"], match["digest"], request.query.get("X-Cargohold-Expires", ""), signature)


async def authenticate(request: web.Request) -> Principal:
    """The caller named by the Authorization header; anonymous without one."""
    header = request.headers.get("Authorization")
    signature = request.query.get("X-Cargohold-Signature")
    if signature is not None:
        return _presigned(request, signature)
    if not header:
        return ANONYMOUS
    scheme, _, value = header.partition(" ")
    identity = request.app[IDENTITY_KEY]
    storage = request.app[STORAGE_KEY]
    if scheme.lower() == "basic":
        user, password = _basic_credentials(value)
        return await storage.db(identity.authenticate_basic, user, password)
    if scheme.lower() == "bearer":
        principal = identity.verify_token(value.strip())
        valid = identity.cached_validity(principal)
        if valid is None:
            valid = await storage.read(identity.check_validity, principal)
        if not valid:
            raise AuthenticationFailed("the token's access key is no longer active")
        return principal
    raise AuthenticationFailed(f"unsupported authorization scheme {scheme!r}")


def _presented(request: web.Request) -> Principal | None:
    """Who a refused caller claimed to be (the user or key id it sent), for the audit log."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _ = _basic_credentials(value)
    except AuthenticationFailed:
        return None
    key_id = user if user.startswith("AKCH") else None
    return Principal(None, user[:255], key_id, "presented")


def _audit(request: web.Request, principal: Principal | None, outcome: str, status: int,
           detail: str | None = None) -> None:
    request.app[AUDIT_KEY].record(AuditEvent(
        at=now_us(), principal=principal.name if principal else None,
        access_key_id=principal.access_key_id if principal else None,
        action=request.get("action") or f"{request.method} {request.path}"[:64],
        repository=request.get("repository"), outcome=outcome, status=status,
        remote=request.remote, detail=detail, request_id=request.get("request_id")))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v2") or request.path == TOKEN_PATH:
        return await handler(request)
    try:
        principal = await authenticate(request)
    except AuthenticationFailed as exc:
        request["repository"] = request.match_info.get("name")
        _audit(request, _presented(request), "unauthenticated", 401, str(exc))
        bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
        raise unauthorized(request, str(exc), error="invalid_token" if bearer else None
                           ) from None
    request["principal"] = principal
    try:
        response = await handler(request)
    except RegistryError as exc:
        if exc.status in (401, 403):
            _audit(request, principal, "denied", exc.status, exc.message)
        elif request.method in STATE_CHANGING:
            _audit(request, principal, "failed", exc.status, exc.code.wire_code)
        raise
    if request.method in STATE_CHANGING:
        _audit(request, principal, "allowed", response.status)
    return response


async def may(request: web.Request, action: str, repository: str) -> bool:
    """Whether the caller may perform `action` on `repository` (no error raised)."""
    authorizer = request.app[AUTHORIZER_KEY]
    principal: Principal = request["principal"]
    if authorizer.open_access or principal.token_access is not None:
        return authorizer.is_allowed(principal, action, repository)
    storage = request.app[STORAGE_KEY]
    return await storage.read(authorizer.is_allowed, principal, action, repository)


async def authorize(request: web.Request, action: str, repository: str) -> None:
    request.setdefault("action", action)  # the route's own action names it in the audit log
    request["repository"] = repository
    if await may(request, action, repository):
        return
    principal: Principal = request["principal"]
    scope = scope_of(action)
    wanted = f"repository:{repository}:{'pull,push' if scope == 'push' else scope}"
    if principal.anonymous and principal.token_access is None:
        raise unauthorized(request, "authentication required", wanted)
    if principal.token_access is None:
        raise RegistryError(ErrorCode.DENIED,
                            detail={"action": action, "repository": repository})
    # A token without the scope: name the scope to ask for (the Docker token protocol's
    # insufficient_scope). An authenticated caller gets it on a 403, which is what makes
    # clients that reuse their first token (oras-py) fetch a wider one.
    if principal.anonymous:
        raise unauthorized(request, "the token does not grant this access", wanted,
                           error="insufficient_scope")
    raise RegistryError(ErrorCode.DENIED, "the token does not grant this access",
                        {"action": action, "repository": repository},
                        headers={"WWW-Authenticate": challenge(request, wanted,
                                                               "insufficient_scope")})


def guarded(actions: str | dict[str, str], handler: Handler) -> Handler:
    """Wrap a repository route: its ECR action (per HTTP method if a dict) must be allowed."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        repository = repository_name(request)
        action = actions if isinstance(actions, str) else actions[request.method]
        await authorize(request, action, repository)
        return await handler(request)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


def require_login(request: web.Request) -> None:
    """Refuse an anonymous caller unless the registry is open to everyone."""
    if request["principal"].anonymous and not request.app[AUTHORIZER_KEY].open_access:
        raise unauthorized(request, "authentication required")


# -- the token endpoint (Docker registry token authentication) --------------------------------

def _requested_scopes(values: list[str]) -> list[tuple[str, str, list[str]]]:
    scopes = []
    for value in values:
        for item in value.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind.split("(")[0] and name and actions:
                scopes.append((kind.split("(")[0], name, actions.split(",")))
    return scopes


async def token(request: web.Request) -> web.Response:
    """Issue a short-lived token limited to the scopes the caller is allowed."""
    identity = request.app[IDENTITY_KEY]
    storage = request.app[STORAGE_KEY]
    authorizer = request.app[AUTHORIZER_KEY]
    params: dict[str, Any] = dict(request.query)
    scope_values = request.query.getall("scope", [])
    form: dict[str, Any] = {}
    if request.method == "POST":
        form = dict(await request.post())
        params.update(form)
        if form.get("scope"):
            scope_values = [str(form["scope"])]
    try:
        if request.method == "POST" and form.get("grant_type") == "password":
            principal = await storage.db(identity.authenticate_basic, str(form.get("username", "")),
                                         str(form.get("password", "")))
        elif request.method == "POST" and form.get("grant_type") not in (None, "password"):
            raise RegistryError(ErrorCode.UNSUPPORTED, "unsupported grant_type",
                                {"grant_type": form.get("grant_type")})
        elif request.headers.get("Authorization", "").lower().startswith("bearer "):
            # A token is not a credential for another token: it would never expire.
            raise AuthenticationFailed("the token service takes credentials, not tokens")
        else:
            principal = await authenticate(request)
    except AuthenticationFailed as exc:
        request["action"] = "GetToken"
        _audit(request, None, "unauthenticated", 401, str(exc))
        raise unauthorized(request, str(exc)) from None
    access: list[dict[str, Any]] = []
    for kind, name, actions in _requested_scopes(scope_values):
        if kind == "repository" and NAME_PATTERN.match(name):
            granted = await storage.db(authorizer.granted_scopes, principal, name, actions)
            access.append({"type": "repository", "name": name, "actions": granted})
        elif kind == "registry" and name == "catalog" and not principal.anonymous:
            access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
    service = str(params.get("service") or identity.service)
    if service != identity.service:
        raise RegistryError(ErrorCode.DENIED, "unknown service", {"service": service})
    signed, expires_in = identity.issue_token(principal, service, access)
    issued = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body: dict[str, Any] = {"token": signed, "access_token": signed, "expires_in": expires_in,
                            "issued_at": issued}
    if request.method == "POST":
        body["scope"] = " ".join(scope_values)
    return web.json_response(body)
