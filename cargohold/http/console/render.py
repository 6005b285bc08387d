"""Rendering: the Jinja2 environment (autoescaped), filters, and the context every page gets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from cargohold.http.console.kinds import ALL_KINDS, Kind, kind_of
from cargohold.http.console.session import CSRF_FIELD, Visit
from cargohold.http.keys import AUTHORIZER_KEY, STORAGE_KEY
from cargohold.services.identity import Principal

HERE = Path(__file__).parent
ADMIN_ACTION = "iam:ListUsers"


def human_size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def when(value: int | None) -> str:
    """Microseconds since the epoch as a UTC time."""
    if value is None:
        return "never"
    moment = dt.datetime.fromtimestamp(value / 1e6, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def short_digest(value: str) -> str:
    algorithm, _, hexa = value.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else value


def kind(media_type: str, artifact_type: str | None) -> Kind:
    return kind_of(media_type, artifact_type)


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=human_size, when=when, short=short_digest)
    env.globals.update(kind=kind, ALL_KINDS=ALL_KINDS, CSRF_FIELD=CSRF_FIELD)


async def may(request: web.Request, action: str, repository: str | None) -> bool:
    """The one Authorizer's answer for the signed-in principal."""
    principal: Principal = request["console"].principal
    storage = request.app[STORAGE_KEY]
    return await storage.read(request.app[AUTHORIZER_KEY].is_allowed, principal, action,
                              repository)


async def is_admin(request: web.Request) -> bool:
    return await may(request, ADMIN_ACTION, None)


async def render(request: web.Request, template: str, context: dict[str, Any],
                 status: int = 200) -> web.Response:
    visit: Visit = request["console"]
    base = {"visit": visit, "admin": await is_admin(request), "q": "",
            "flash": request.query.get("flash", ""), "error": ""}
    base.update(context)
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    return response
