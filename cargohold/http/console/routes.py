"""Mounts the console under /console/ (and sends / there) with its middleware and templates."""

from __future__ import annotations

from aiohttp import web

from cargohold.http.console import admin, repositories, repository
from cargohold.http.console.render import HERE, render, setup_templates
from cargohold.http.console.session import (
    BROWSE_KEY,
    SESSIONS_KEY,
    console_middleware,
    redirect,
    safe_next,
    sign_in,
    sign_out,
)
from cargohold.http.keys import STORAGE_KEY
from cargohold.storage.console import BrowseStore, SessionStore


async def home(request: web.Request) -> web.StreamResponse:
    return redirect("/console/")


async def signin_page(request: web.Request) -> web.StreamResponse:
    if request["console"].signed_in or request["console"].open_access:
        return redirect(safe_next(request.query.get("next")))
    return await render(request, "signin.html", {"next": safe_next(request.query.get("next")),
                                                 "user_name": ""})


async def signin_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    response, error = await sign_in(request, form)
    if response is not None:
        return response
    return await render(request, "signin.html", {
        "next": safe_next(str(form.get("next", ""))), "error": error,
        "user_name": str(form.get("user_name", ""))[:64]}, status=401)


async def signout(request: web.Request) -> web.StreamResponse:
    return await sign_out(request)


def setup_console(app: web.Application) -> None:
    """Everything the console adds to the application: one call from `create_app`."""
    storage = app[STORAGE_KEY]
    app[SESSIONS_KEY] = SessionStore(storage.database)
    app[BROWSE_KEY] = BrowseStore(storage.database)
    app.middlewares.append(console_middleware)
    setup_templates(app)
    router = app.router
    router.add_get("/", home)
    router.add_get("/console", home)
    router.add_static("/console/static/", HERE / "static", append_version=False)
    router.add_get("/console/signin", signin_page)
    router.add_post("/console/signin", signin_submit)
    router.add_post("/console/signout", signout)
    repositories.add_routes(router)
    admin.add_routes(router)
    repository.add_routes(router)
