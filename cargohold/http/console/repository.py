"""A repository's page: its images (paged in SQL), the repository policy and lifecycle policy."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from cargohold.http.console import artifact
from cargohold.http.console.ecr_adapter import NotAvailable, allowed, available, invoke
from cargohold.http.console.kinds import BY_KEY, kind_filter
from cargohold.http.console.render import may, render
from cargohold.http.console.session import BROWSE_KEY, redirect
from cargohold.http.keys import STORAGE_KEY
from cargohold.services.actions import BATCH_GET_IMAGE, DESCRIBE_IMAGES, DESCRIBE_REPOSITORIES
from cargohold.storage.metadata import RepositoryNotFound
from cargohold.wire.ecr import EcrError
from cargohold.wire.names import NAME_PATTERN

PAGE_SIZE = 50
TAG_STATUSES = ("ANY", "TAGGED", "UNTAGGED")
MAX_POLICY = 10_240
LIFECYCLE_OPS = ("GetLifecyclePolicy", "PutLifecyclePolicy", "StartLifecyclePolicyPreview",
                 "GetLifecyclePolicyPreview")


def not_found(request: web.Request, name: str) -> web.HTTPException:
    """The same answer for a missing repository and a hidden one: existence is not leaked."""
    return web.HTTPNotFound(text=f"No repository {name!r} that you may see.")


async def may_list_images(request: web.Request, name: str) -> bool:
    return await may(request, DESCRIBE_IMAGES, name) or await may(request, BATCH_GET_IMAGE, name)


async def visible(request: web.Request, name: str) -> bool:
    """Listed on the Repositories page (pull or describe), so its page opens."""
    return await may_list_images(request, name) or await may(request, DESCRIBE_REPOSITORIES,
                                                              name)


async def _read_op(request: web.Request, name: str, params: dict[str, Any]
                   ) -> tuple[dict[str, Any] | None, str]:
    """Call a read-only ECR operation; (result, "") or (None, why not)."""
    try:
        return await invoke(request, request["console"].principal, name, params), ""
    except NotAvailable:
        return None, "not available on this server"
    except EcrError as exc:
        return None, exc.name


async def repository_page(request: web.Request, name: str, *, error: str = "",
                          status: int = 200, drafts: dict[str, str] | None = None
                          ) -> web.Response:
    if not await visible(request, name):
        raise not_found(request, name)
    query = request.query
    kind_key = query.get("kind", "") if query.get("kind", "") in BY_KEY else ""
    tag_status = query.get("status", "ANY") if query.get("status") in TAG_STATUSES else "ANY"
    newest = query.get("order", "newest") != "oldest"
    text = query.get("tag", "").strip()[:128]
    page = int(query["page"]) if query.get("page", "").isdigit() else 1
    page = max(1, min(page, 1_000_000))
    storage = request.app[STORAGE_KEY]
    browse = request.app[BROWSE_KEY]
    can_list = await may_list_images(request, name)
    try:
        images, total = await storage.read(
            browse.image_page, name, offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE if can_list else 0, newest_first=newest, tag_status=tag_status,
            kind_filter=kind_filter(kind_key) if kind_key else None, tag_prefix=text)
    except RepositoryNotFound:
        raise not_found(request, name) from None
    if not can_list:
        images, total = [], 0
    pages = max(1, -(-total // PAGE_SIZE))
    counts = await storage.read(browse.referrer_counts, name, [i.digest for i in images])
    principal = request["console"].principal
    named = {"repositoryName": name}
    policy, policy_error = await _read_op(request, "GetRepositoryPolicy", named)
    lifecycle, lifecycle_error = (None, "not available on this server")
    preview: dict[str, Any] | None = None
    if all(available(op) for op in LIFECYCLE_OPS):
        lifecycle, lifecycle_error = await _read_op(request, "GetLifecyclePolicy", named)
        if images:  # the preview's verdict on the images of this page (the model's max: 100)
            preview, _ = await _read_op(request, "GetLifecyclePolicyPreview", {
                **named, "imageIds": [{"imageDigest": image.digest} for image in images]})
    expiring = {result.get("imageDigest"): result for result in
                (preview or {}).get("previewResults", [])}

    def link(**changes: Any) -> str:
        params = {"kind": kind_key, "status": "" if tag_status == "ANY" else tag_status,
                  "order": "" if newest else "oldest", "tag": text, "page": str(page)}
        params.update({k: str(v) for k, v in changes.items()})
        return f"/console/r/{quote(name)}?" + urlencode({k: v for k, v in params.items() if v})

    drafts = drafts or {}
    return await render(request, "repository.html", {
        "name": name, "images": images, "total": total, "page": page, "pages": pages,
        "counts": counts, "kind_key": kind_key, "tag_status": tag_status, "newest": newest,
        "tag_text": text, "link": link, "statuses": TAG_STATUSES,
        "policy": drafts.get("policy", _pretty((policy or {}).get("policyText", ""))),
        "policy_error": policy_error if policy_error != "RepositoryPolicyNotFoundException"
        else "", "can_set_policy": await allowed(request, principal, "SetRepositoryPolicy",
                                                 named),
        "lifecycle": drafts.get("lifecycle",
                                _pretty((lifecycle or {}).get("lifecyclePolicyText", ""))),
        "lifecycle_error": lifecycle_error
        if lifecycle_error != "LifecyclePolicyNotFoundException" else "",
        "lifecycle_available": all(available(op) for op in LIFECYCLE_OPS),
        "can_set_lifecycle": await allowed(request, principal, "PutLifecyclePolicy", named),
        "can_preview": await allowed(request, principal, "StartLifecyclePolicyPreview", named),
        "preview": preview, "expiring": expiring,
        "can_delete": await allowed(request, principal, "BatchDeleteImage", named),
        "can_list": can_list, "error": error}, status=status)


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2) if text else ""
    except ValueError:
        return text


def _checked_json(text: str, what: str) -> str:
    if len(text) > MAX_POLICY:
        raise ValueError(f"the {what} is longer than {MAX_POLICY} characters")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the {what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"the {what} must be a JSON object")
    return text.strip()  # stored as written, like ECR does


async def policy_submit(request: web.Request, name: str) -> web.StreamResponse:
    form = await request.post()
    text = str(form.get("policy", ""))
    principal = request["console"].principal
    try:
        if form.get("op") == "delete":
            await invoke(request, principal, "DeleteRepositoryPolicy", {"repositoryName": name})
            message = "Repository policy deleted."
        else:
            await invoke(request, principal, "SetRepositoryPolicy",
                         {"repositoryName": name, "policyText": _checked_json(text, "policy")})
            message = "Repository policy saved."
    except (ValueError, EcrError, NotAvailable) as exc:
        return await repository_page(request, name, error=_why(exc), status=400,
                                     drafts={"policy": text})
    return redirect(f"/console/r/{quote(name)}?flash={quote(message)}#policy")


async def lifecycle_submit(request: web.Request, name: str) -> web.StreamResponse:
    form = await request.post()
    text = str(form.get("lifecycle", ""))
    principal = request["console"].principal
    try:
        checked = _checked_json(text, "lifecycle policy")
        if form.get("op") == "preview":
            await invoke(request, principal, "StartLifecyclePolicyPreview",
                         {"repositoryName": name, "lifecyclePolicyText": checked})
            message = "Preview started; the images it would expire are marked."
        else:
            await invoke(request, principal, "PutLifecyclePolicy",
                         {"repositoryName": name, "lifecyclePolicyText": checked})
            message = "Lifecycle policy saved."
    except (ValueError, EcrError, NotAvailable) as exc:
        return await repository_page(request, name, error=_why(exc), status=400,
                                     drafts={"lifecycle": text})
    return redirect(f"/console/r/{quote(name)}?flash={quote(message)}#lifecycle")


def _why(exc: Exception) -> str:
    if isinstance(exc, EcrError):
        return f"{exc.name}: {exc.message}"
    if isinstance(exc, NotAvailable):
        return f"{exc} is not available on this server"
    return str(exc)


def _split(request: web.Request) -> tuple[str, str]:
    path = request.match_info["path"]
    name, _, rest = path.partition("/-/")
    if not NAME_PATTERN.match(name):
        raise web.HTTPNotFound(text="not a repository name")
    return name, rest


async def dispatch_get(request: web.Request) -> web.StreamResponse:
    name, rest = _split(request)
    if not rest:
        return await repository_page(request, name)
    if not await visible(request, name):
        raise not_found(request, name)
    return await artifact.dispatch_get(request, name, rest)


async def dispatch_post(request: web.Request) -> web.StreamResponse:
    name, rest = _split(request)
    if not await visible(request, name):
        raise not_found(request, name)
    if rest == "policy":
        return await policy_submit(request, name)
    if rest == "lifecycle":
        return await lifecycle_submit(request, name)
    return await artifact.dispatch_post(request, name, rest)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/r/{path:.+}", dispatch_get)
    router.add_post("/console/r/{path:.+}", dispatch_post)
