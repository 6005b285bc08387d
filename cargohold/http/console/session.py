"""Console sessions, CSRF tokens and the security headers of every console response.

A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure behind HTTPS) whose
hash is a row of `console_sessions`: signing out deletes the row, which ends the session on every
worker and node at once. Each form carries an HMAC of the session token (before sign-in: of a
random pre-session cookie), checked in constant time on every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from cargohold.http.keys import AUDIT_KEY, AUTHORIZER_KEY, IDENTITY_KEY, STORAGE_KEY
from cargohold.services.identity import ANONYMOUS, AuthenticationFailed, Principal
from cargohold.storage.console import BrowseStore, SessionStore
from cargohold.storage.identity import AuditEvent
from cargohold.storage.metadata import now_us

log = logging.getLogger(__name__)
SESSION_COOKIE = "cargohold_console"
PRE_COOKIE = "cargohold_console_pre"
SESSION_TTL = 12 * 3600
CSRF_FIELD = "csrf"
SESSIONS_KEY = web.AppKey("console_sessions", SessionStore)
BROWSE_KEY = web.AppKey("console_browse", BrowseStore)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PUBLIC_PATHS = ("/console/signin", "/console/static/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Visit:
    """Who is looking at the console, and the CSRF token their forms carry."""

    principal: Principal
    csrf: str
    signed_in: bool
    open_access: bool


class CsrfRefused(Exception):
    """A state-changing request without the token of its session."""


def _csrf_key(request: web.Request) -> bytes:
    keys = request.app[STORAGE_KEY].keys
    return hmac.new(keys.token_key, b"cargohold-console-csrf", hashlib.sha256).digest()


def csrf_token(request: web.Request, binding: str) -> str:
    return hmac.new(_csrf_key(request), binding.encode(), hashlib.sha256).hexdigest()


def _secure(request: web.Request) -> bool:
    public = request.app[STORAGE_KEY].settings.public_url or ""
    return request.secure or public.startswith("https://")


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", httponly=True,
                        samesite="Strict", secure=_secure(request))


async def _session_principal(request: web.Request, token: str) -> Principal | None:
    storage = request.app[STORAGE_KEY]
    record = await storage.read(request.app[SESSIONS_KEY].get, token, now_us())
    if record is None:
        return None
    if record.user_id is None:
        return ANONYMOUS
    return Principal(record.user_id, record.user_name, record.access_key_id, "console")


async def _start_session(request: web.Request, principal: Principal) -> str:
    token = secrets.token_urlsafe(32)
    now = now_us()
    await request.app[STORAGE_KEY].db(
        request.app[SESSIONS_KEY].create, token, principal.user_id, principal.name,
        principal.access_key_id, now, now + SESSION_TTL * 1_000_000)
    return token


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the session, check CSRF on POST, add the security headers (console paths only)."""
    if not request.path.startswith("/console"):
        return await handler(request)
    if request.path.startswith("/console/static/"):
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response
    open_access = request.app[AUTHORIZER_KEY].open_access
    token = request.cookies.get(SESSION_COOKIE)
    principal = await _session_principal(request, token) if token else None
    new_cookies: list[tuple[str, str, int]] = []
    if principal is not None and token:
        binding = token
    else:
        # Not signed in: an open registry's visitor, or someone on the way to sign in. Their
        # forms are bound to a random cookie of their own (no database row for visitors).
        if not open_access and not request.path.startswith(PUBLIC_PATHS):
            if request.method == "GET":
                target = request.path_qs
                raise web.HTTPSeeOther(f"/console/signin?next={quote(target, safe='')}")
            return _forbidden("Sign in first.")
        binding = request.cookies.get(PRE_COOKIE) or ""
        if len(binding) < 32:
            binding = secrets.token_urlsafe(32)
            new_cookies.append((PRE_COOKIE, binding, SESSION_TTL))
    visit = Visit(principal or ANONYMOUS, csrf_token(request, binding),
                  principal is not None and not principal.anonymous, open_access)
    request["console"] = visit
    request["principal"] = visit.principal
    if request.method == "POST":
        form = await request.post()
        sent = str(form.get(CSRF_FIELD, ""))
        if new_cookies:
            # A cookie minted by this very request cannot have been in a form yet.
            return _forbidden("The form has expired. Reload the page and try again.")
        if not hmac.compare_digest(sent.encode(), visit.csrf.encode()):
            return _forbidden("The form's security token is missing or wrong "
                              "(possible cross-site request). Nothing was changed.")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_page(exc.status, exc.text or exc.reason)
    except Exception:
        log.exception("console error on %s %s", request.method, request.path)
        response = _error_page(500, "Something went wrong on the server. It has been logged.")
    for name, value, max_age in new_cookies:
        _set_cookie(request, response, name, value, max_age)
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(status: int, message: str) -> web.Response:
    title = {403: "Request refused", 404: "Not found"}.get(status, f"Error {status}")
    body = ("<!doctype html><html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{title} · Cargohold</title>"
            "<link rel=stylesheet href=/console/static/console.css><main class=narrow>"
            f"<h1>{title}</h1><p>{html.escape(message)}</p>"
            "<p><a href=/console/>Back to the repositories</a></p></main>")
    response = web.Response(status=status, text=body, content_type="text/html")
    response.headers.update(SECURITY_HEADERS)
    return response


def _forbidden(message: str) -> web.Response:
    return _error_page(403, message)


def safe_next(value: str | None) -> str:
    """Only console paths on this site, never `//elsewhere` or a scheme."""
    if value and value.startswith("/console/") and not value.startswith("//") \
            and "\\" not in value and "\n" not in value and "\r" not in value:
        return value
    return "/console/"


async def sign_in(request: web.Request, form: Any) -> tuple[web.StreamResponse | None, str]:
    """Check the submitted credentials; a redirect with a fresh session, or an error text."""
    key_id = str(form.get("access_key_id", "")).strip()
    secret = str(form.get("secret_access_key", ""))
    user = str(form.get("user_name", "")).strip()
    password = str(form.get("password", ""))
    identity = request.app[IDENTITY_KEY]
    storage = request.app[STORAGE_KEY]
    try:
        if key_id:
            if not key_id.startswith("AKCH") or not secret:
                raise AuthenticationFailed("invalid credentials")
            principal = await storage.db(identity.authenticate_basic, key_id, secret)
        elif user and password:
            principal = await storage.db(identity.authenticate_basic, user, password)
        else:
            return None, "Enter an access key ID and secret, or a user name and password."
    except AuthenticationFailed as exc:
        request.app[AUDIT_KEY].record(AuditEvent(
            at=now_us(), principal=(key_id or user)[:255] or None,
            access_key_id=key_id[:32] if key_id.startswith("AKCH") else None,
            action="console:SignIn", repository=None, outcome="unauthenticated", status=401,
            remote=request.remote, detail=str(exc)))
        return None, "Sign-in failed: those credentials are not valid."
    token = await _start_session(request, principal)
    request.app[AUDIT_KEY].record(AuditEvent(
        at=now_us(), principal=principal.name, access_key_id=principal.access_key_id,
        action="console:SignIn", repository=None, outcome="allowed", status=303,
        remote=request.remote, detail=None))
    response = redirect(safe_next(str(form.get("next", ""))))
    _set_cookie(request, response, SESSION_COOKIE, token, SESSION_TTL)
    response.del_cookie(PRE_COOKIE, path="/console")
    return response, ""


async def sign_out(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await request.app[STORAGE_KEY].db(request.app[SESSIONS_KEY].revoke, token)
    response = redirect("/console/signin")
    response.del_cookie(SESSION_COOKIE, path="/console")
    return response


def redirect(location: str) -> web.Response:
    """A 303 See Other (after a form post, the browser GETs the next page)."""
    return web.Response(status=303, headers={"Location": location})
