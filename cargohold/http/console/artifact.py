"""An artifact's page: its whole graph, raw manifest, pull commands, contents and tag actions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from cargohold.http.console import contents
from cargohold.http.console.ecr_adapter import NotAvailable, allowed, invoke
from cargohold.http.console.kinds import INDEX_TYPES, Kind, kind_of
from cargohold.http.console.render import may, render
from cargohold.http.console.session import BROWSE_KEY, redirect
from cargohold.http.keys import STORAGE_KEY
from cargohold.services.actions import BATCH_GET_IMAGE, GET_DOWNLOAD_URL
from cargohold.storage.referrers import all_referrers
from cargohold.wire.digest import is_digest
from cargohold.wire.ecr import EcrError
from cargohold.wire.names import TAG_PATTERN

MAX_NODES = 400
TITLE = "org.opencontainers.image.title"
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Node:
    """One manifest of the graph, with its children (index entries) and its referrers."""

    digest: str
    media_type: str
    size: int
    kind: Kind
    artifact_type: str | None = None
    platform: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    referrers: dict[str, list[Node]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    missing: bool = False
    nested_referrers: int = 0

    @property
    def config(self) -> dict[str, Any] | None:
        config = self.document.get("config")
        return config if isinstance(config, dict) else None

    @property
    def layers(self) -> list[dict[str, Any]]:
        layers = self.document.get("layers")
        return [layer for layer in layers if isinstance(layer, dict)] if isinstance(
            layers, list) else []


def _platform(descriptor: dict[str, Any]) -> str:
    platform = descriptor.get("platform")
    if not isinstance(platform, dict):
        return ""
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(part for part in parts if part)


class GraphBuilder:
    """Loads the graph from the metadata store, bounded to MAX_NODES manifests."""

    def __init__(self, request: web.Request, repository: str) -> None:
        self.storage = request.app[STORAGE_KEY]
        self.browse = request.app[BROWSE_KEY]
        self.repository = repository
        self.loaded = 0

    async def node(self, digest: str, platform: str = "", depth: int = 0) -> Node:
        self.loaded += 1
        record = await self.storage.read(self.storage.metadata.get_manifest, self.repository,
                                         digest=digest)
        if record is None:
            return Node(digest, "", 0, kind_of("", None), missing=True, platform=platform)
        try:
            document = json.loads(record.content)
        except ValueError:
            document = {}
        document = document if isinstance(document, dict) else {}
        config = document.get("config")
        found = document.get("artifactType") or (
            config.get("mediaType") if isinstance(config, dict) else None)
        artifact_type = found if isinstance(found, str) else None
        annotations = document.get("annotations")
        node = Node(record.digest, record.media_type, record.size,
                    kind_of(record.media_type, artifact_type), artifact_type, platform,
                    document, annotations={str(k): str(v) for k, v in annotations.items()}
                    if isinstance(annotations, dict) else {})
        if record.media_type in INDEX_TYPES:
            for child in document.get("manifests") or []:
                if isinstance(child, dict) and isinstance(child.get("digest"), str) \
                        and self.loaded < MAX_NODES:
                    node.children.append(await self.node(child["digest"], _platform(child),
                                                         depth + 1))
        await self._referrers(node)
        return node

    async def _referrers(self, node: Node) -> None:
        found = await self.storage.read(all_referrers, self.storage.database, self.repository,
                                        node.digest, MAX_NODES)
        counts = await self.storage.read(self.browse.referrer_counts, self.repository,
                                         [r.digest for r in found])
        for referrer in found:
            kind = kind_of(referrer.media_type, referrer.artifact_type)
            child = Node(referrer.digest, referrer.media_type, referrer.size, kind,
                         referrer.artifact_type,
                         annotations={str(k): str(v) for k, v in
                                      (referrer.annotations or {}).items()},
                         nested_referrers=counts.get(referrer.digest, 0))
            node.referrers.setdefault(referrer.artifact_type or "(none)", []).append(child)


async def resolve(request: web.Request, repository: str, reference: str) -> tuple[str, str]:
    """(digest, tag or "") of a reference, or 404."""
    storage = request.app[STORAGE_KEY]
    if is_digest(reference):
        record = await storage.read(storage.metadata.get_manifest, repository, digest=reference)
        tag = ""
    elif TAG_PATTERN.match(reference):
        record = await storage.read(storage.metadata.get_manifest, repository, tag=reference)
        tag = reference
    else:
        record = None
    if record is None:
        raise web.HTTPNotFound(text=f"No artifact {reference!r} in {repository}.")
    return record.digest, tag


def pull_commands(request: web.Request, repository: str, digest: str, tag: str,
                  kind: Kind) -> list[tuple[str, str]]:
    public = request.app[STORAGE_KEY].settings.public_url
    base = public.rstrip("/") if public else f"{request.scheme}://{request.host}"
    host = base.split("://", 1)[-1]
    ref = f"{host}/{repository}@{digest}"
    commands = [("docker", f"docker pull {ref}"), ("podman", f"podman pull {ref}"),
                ("oras", f"oras pull {ref}"), ("cargohold", f"cargohold pull {ref}")]
    if kind.key == "helm" and tag:
        commands.append(("helm", f"helm pull oci://{host}/{repository} --version {tag}"))
    commands.append(("aws", f"aws ecr batch-get-image --endpoint-url {base} "
                            f"--repository-name {repository} --image-ids imageDigest={digest}"))
    return commands


async def artifact_page(request: web.Request, repository: str, reference: str,
                        error: str = "", status: int = 200) -> web.Response:
    if not await may(request, BATCH_GET_IMAGE, repository):
        raise web.HTTPNotFound(text="You may not pull from this repository.")
    digest, tag = await resolve(request, repository, reference)
    builder = GraphBuilder(request, repository)
    root = await builder.node(digest)
    storage = request.app[STORAGE_KEY]
    image = await storage.read(storage.images.find, repository, digest=digest)
    principal = request["console"].principal
    named = {"repositoryName": repository}
    inside = await contents.inspect(request, repository, root, request.query.get("file"))
    raw = json.dumps(root.document, indent=2, ensure_ascii=False)
    return await render(request, "artifact.html", {
        "name": repository, "reference": reference, "tag": tag, "root": root,
        "tags": image.tags if image else (), "image": image, "raw": raw,
        "truncated": builder.loaded >= MAX_NODES,
        "commands": pull_commands(request, repository, digest, tag, root.kind),
        "inside": inside, "can_download": await may(request, GET_DOWNLOAD_URL, repository),
        "can_tag": await allowed(request, principal, "PutImage", named),
        "can_delete": await allowed(request, principal, "BatchDeleteImage", named),
        "base": f"/console/r/{quote(repository)}", "error": error,
        "title_key": TITLE}, status=status)


async def tag_action(request: web.Request, repository: str, reference: str,
                     action: str) -> web.StreamResponse:
    form = await request.post()
    digest, _ = await resolve(request, repository, reference)
    principal = request["console"].principal
    storage = request.app[STORAGE_KEY]
    base = f"/console/r/{quote(repository)}"
    try:
        if action == "tag":
            new_tag = str(form.get("tag", "")).strip()
            if not TAG_PATTERN.match(new_tag):
                raise ValueError("A tag is 1 to 128 letters, digits, '.', '_' or '-' "
                                 "(not starting with '.' or '-').")
            record = await storage.read(storage.metadata.get_manifest, repository,
                                        digest=digest)
            if record is None:
                raise ValueError("the artifact is gone")
            await invoke(request, principal, "PutImage", {
                "repositoryName": repository, "imageManifest": record.content.decode(),
                "imageManifestMediaType": record.media_type, "imageTag": new_tag,
                "imageDigest": digest})
            return redirect(f"{base}/-/a/{digest}?flash=" + quote(f"Tagged {new_tag}."))
        if action == "untag":
            old_tag = str(form.get("tag", ""))
            result = await invoke(request, principal, "BatchDeleteImage", {
                "repositoryName": repository, "imageIds": [{"imageTag": old_tag}]})
            _raise_failures(result)
            still = await storage.read(storage.metadata.get_manifest, repository,
                                       digest=digest)
            target = f"{base}/-/a/{digest}" if still else base
            return redirect(f"{target}?flash=" + quote(f"Tag {old_tag} removed."))
        result = await invoke(request, principal, "BatchDeleteImage", {
            "repositoryName": repository, "imageIds": [{"imageDigest": digest}]})
        _raise_failures(result)
        return redirect(f"{base}?flash=" + quote(f"Deleted {digest}."))
    except (ValueError, EcrError, NotAvailable) as exc:
        message = exc.message if isinstance(exc, EcrError) else str(exc)
        return await artifact_page(request, repository, digest, error=message, status=400)


def _raise_failures(result: dict[str, Any]) -> None:
    failures = result.get("failures") or []
    if failures:
        raise ValueError(str(failures[0].get("failureReason", "refused")))


async def download(request: web.Request, repository: str, digest: str) -> web.StreamResponse:
    """A layer or config as an attachment (never rendered by the browser)."""
    if not await may(request, GET_DOWNLOAD_URL, repository) or not is_digest(digest):
        raise web.HTTPNotFound(text="No such blob that you may download.")
    storage = request.app[STORAGE_KEY]
    if await storage.read(storage.metadata.blob_size, repository, digest) is None:
        raise web.HTTPNotFound(text="No such blob in this repository.")
    location = await storage.blobs.locate(digest)
    if location is None or location.path is None:
        raise web.HTTPNotFound(text="The blob's bytes are not available.")
    filename = _SAFE_FILENAME.sub("_", request.query.get("filename", ""))[:100].strip("._")
    filename = filename or digest.replace(":", "-")
    response = web.FileResponse(location.path, headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{filename}"'})
    return response


async def dispatch_get(request: web.Request, repository: str, rest: str) -> web.StreamResponse:
    if rest.startswith("a/"):
        return await artifact_page(request, repository, rest[2:])
    if rest.startswith("blob/"):
        return await download(request, repository, rest[5:])
    raise web.HTTPNotFound(text="No such page.")


async def dispatch_post(request: web.Request, repository: str, rest: str
                        ) -> web.StreamResponse:
    reference, _, action = rest.removeprefix("a/").rpartition("/")
    if rest.startswith("a/") and action in ("tag", "untag", "delete"):
        return await tag_action(request, repository, reference, action)
    raise web.HTTPNotFound(text="No such action.")
