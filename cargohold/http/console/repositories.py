"""The Repositories page: the repositories this user may list, with create and delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from cargohold.http.console.ecr_adapter import NotAvailable, allowed, invoke
from cargohold.http.console.kinds import kind_of
from cargohold.http.console.render import render
from cargohold.http.console.session import BROWSE_KEY, redirect
from cargohold.http.keys import AUTHORIZER_KEY, STORAGE_KEY
from cargohold.services.actions import VISIBLE_WITH
from cargohold.wire.ecr import EcrError

PAGE_SIZE = 50
SORTS = {"name": lambda s: s.name, "images": lambda s: s.image_count,
         "size": lambda s: s.total_size, "pushed": lambda s: s.last_push or 0}
MUTABILITIES = ("MUTABLE", "IMMUTABLE")


async def visible_repositories(request: web.Request) -> list[str]:
    """Every repository this principal may list (pull or describe), by the one Authorizer."""
    storage = request.app[STORAGE_KEY]
    names = await storage.read(storage.metadata.list_repositories, None, None)
    return await storage.read(request.app[AUTHORIZER_KEY].visible,
                              request["console"].principal, names, VISIBLE_WITH)


def _page_number(value: str | None) -> int:
    return max(1, min(int(value), 100_000)) if value and value.isdigit() else 1


async def repositories_page(request: web.Request, error: str = "",
                            status: int = 200) -> web.Response:
    query = request.query
    text = query.get("q", "").strip()[:255]
    sort = query.get("sort", "name") if query.get("sort") in SORTS else "name"
    descending = query.get("order") == "desc"
    names = await visible_repositories(request)
    if text:
        names = [name for name in names if text.lower() in name.lower()]
    storage = request.app[STORAGE_KEY]
    summaries = await storage.read(request.app[BROWSE_KEY].repository_summaries, names)
    rows = sorted(summaries.values(), key=SORTS[sort], reverse=descending)
    page = _page_number(query.get("page"))
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    shown = rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    entries = []
    for summary in shown:
        kinds = {kind_of(media, artifact).key: kind_of(media, artifact)
                 for media, artifact in summary.types}
        entries.append({"summary": summary, "kinds": list(kinds.values()),
                        "can_delete": await allowed(request, request["console"].principal,
                                                    "DeleteRepository",
                                                    {"repositoryName": summary.name})})
    can_create = await allowed(request, request["console"].principal, "CreateRepository",
                               {"repositoryName": "x"})

    def link(**changes: Any) -> str:
        params = {"q": text, "sort": sort, "order": "desc" if descending else "asc",
                  "page": str(page)}
        params.update({k: str(v) for k, v in changes.items()})
        return "/console/?" + urlencode({k: v for k, v in params.items() if v})

    return await render(request, "repositories.html", {
        "entries": entries, "q": text, "sort": sort, "descending": descending, "page": page,
        "pages": pages, "total": len(rows), "link": link, "can_create": can_create,
        "mutabilities": MUTABILITIES, "error": error}, status=status)


async def repositories_get(request: web.Request) -> web.StreamResponse:
    return await repositories_page(request)


async def create_repository(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    mutability = str(form.get("mutability", "MUTABLE"))
    if mutability not in MUTABILITIES:
        mutability = "MUTABLE"
    try:
        await invoke(request, request["console"].principal, "CreateRepository",
                     {"repositoryName": name, "imageTagMutability": mutability})
    except (EcrError, NotAvailable) as exc:
        message = exc.message if isinstance(exc, EcrError) else "not available"
        return await repositories_page(request, f"Could not create {name!r}: {message}", 400)
    return redirect(f"/console/r/{quote(name)}?flash=" + quote("Repository created."))


async def delete_repository(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", ""))
    if str(form.get("confirm", "")) != name:
        return await repositories_page(
            request, "To delete a repository, type its exact name to confirm.", 400)
    try:
        await invoke(request, request["console"].principal, "DeleteRepository",
                     {"repositoryName": name, "force": True})
    except (EcrError, NotAvailable) as exc:
        message = exc.message if isinstance(exc, EcrError) else "not available"
        return await repositories_page(request, f"Could not delete {name!r}: {message}", 400)
    return redirect("/console/?flash=" + quote(f"Repository {name} deleted."))


async def search(request: web.Request) -> web.StreamResponse:
    """Repositories whose name, and tags whose name, contain the text (visible ones only)."""
    text = request.query.get("q", "").strip()[:128]
    names = await visible_repositories(request) if text else []
    repos = [name for name in names if text.lower() in name.lower()][:100]
    storage = request.app[STORAGE_KEY]
    tags = await storage.read(request.app[BROWSE_KEY].search_tags, names, text, 100)
    return await render(request, "search.html", {"q": text, "repos": repos, "tags": tags})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/", repositories_get)
    router.add_get("/console/search", search)
    router.add_post("/console/repositories/create", create_repository)
    router.add_post("/console/repositories/delete", delete_repository)

