"""What is inside an artifact: a Helm chart's files, an OPA bundle's policies, an image config.

Every read is bounded (see `archives`), runs in a thread, and returns plain data for templates
that escape it; only a chart README becomes HTML, rendered by markdown-it without raw HTML and
then cleaned by nh3.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cargohold.http.console.archives import (
    ArchiveRefused,
    list_chart,
    read_archive,
    safe_name,
)
from cargohold.http.keys import STORAGE_KEY

if TYPE_CHECKING:
    from cargohold.http.console.artifact import Node

HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
OPA_LAYERS = ("application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip",
              "application/vnd.oci.image.layer.v1.tar+gzip")
IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json",
                 "application/vnd.docker.container.image.v1+json")
MAX_CONFIG = 1024 * 1024


@functools.cache
def _markdown() -> Any:
    """The renderer, built on first use: markdown-it, nh3 and PyYAML (~3 MiB) load only in a
    worker that shows a chart, not in every worker."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False})


def render_markdown(text: str) -> str:
    """Markdown to HTML that cannot run anything: no raw HTML in, nh3's allow-list out."""
    import nh3

    return nh3.clean(_markdown().render(text), url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


async def _blob_path(request: web.Request, repository: str, digest: str) -> tuple[Any, int]:
    storage = request.app[STORAGE_KEY]
    if await storage.read(storage.metadata.blob_size, repository, digest) is None:
        raise ArchiveRefused("the layer is not in this repository")
    location = await storage.blobs.locate(digest)
    if location is None or location.path is None:
        raise ArchiveRefused("the layer's bytes cannot be opened here")
    return location.path, location.size


def _layer(node: Node, media_types: tuple[str, ...]) -> dict[str, Any] | None:
    for layer in node.layers:
        if layer.get("mediaType") in media_types and isinstance(layer.get("digest"), str):
            return layer
    return None


def _text(data: bytes | None) -> str:
    return data.decode("utf-8", errors="replace") if data else ""


def _chart_fields(data: bytes | None) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(_text(data)) if data else None
    except yaml.YAMLError as exc:
        return {"error": f"Chart.yaml is not valid YAML: {str(exc)[:200]}"}
    if not isinstance(document, dict):
        return {"error": "Chart.yaml holds no mapping"}
    fields = {key: str(document.get(key, ""))[:1000] for key in
              ("name", "version", "appVersion", "description", "apiVersion", "type")}
    dependencies = []
    for dependency in document.get("dependencies") or []:
        if isinstance(dependency, dict):
            dependencies.append({key: str(dependency.get(key, ""))[:500]
                                 for key in ("name", "version", "repository")})
    fields["dependencies"] = dependencies[:200]
    return fields


def _chart(path: Any, size: int) -> dict[str, Any]:
    view = list_chart(path, size)
    readme = next((view.files[name] for name in ("README.md", "readme.md", "README",
                                                 "README.txt") if name in view.files), None)
    return {"fields": _chart_fields(view.files.get("Chart.yaml")),
            "values": _text(view.files.get("values.yaml")),
            "readme_html": render_markdown(_text(readme)) if readme else "",
            "truncated": sorted(view.truncated), "entries": len(view.entries)}


def _bundle(path: Any, size: int, wanted: str | None) -> dict[str, Any]:
    names = {".manifest"} | ({wanted} if wanted else set())
    view = read_archive(path, size, names)
    roots: list[str] = []
    revision = ""
    if ".manifest" in view.files:
        try:
            manifest = json.loads(view.files[".manifest"])
        except ValueError:
            manifest = {}
        if isinstance(manifest, dict):
            roots = [str(root) for root in manifest.get("roots") or [] ][:200]
            revision = str(manifest.get("revision", ""))[:200]
    policies = [(name, size) for name, size in view.entries
                if name.endswith((".rego", ".json", ".yaml", ".yml")) and name != ".manifest"]
    return {"roots": roots, "revision": revision, "files": policies[:2000],
            "file": wanted if wanted in view.files else None,
            "file_text": _text(view.files.get(wanted)) if wanted else "",
            "file_truncated": wanted in view.truncated}


async def _config(request: web.Request, repository: str, digest: str, size: int
                  ) -> dict[str, Any]:
    if size > MAX_CONFIG:
        raise ArchiveRefused("the image config is larger than 1 MiB")
    storage = request.app[STORAGE_KEY]
    if await storage.read(storage.metadata.blob_size, repository, digest) is None:
        raise ArchiveRefused("the config is not in this repository")
    chunks = []
    total = 0
    async for chunk in storage.blobs.read(digest):
        total += len(chunk)
        if total > MAX_CONFIG:
            raise ArchiveRefused("the image config is larger than 1 MiB")
        chunks.append(chunk)
    try:
        document = json.loads(b"".join(chunks))
    except ValueError:
        raise ArchiveRefused("the image config is not JSON") from None
    if not isinstance(document, dict):
        raise ArchiveRefused("the image config is not a JSON object")
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    platform = "/".join(str(document[k]) for k in ("os", "architecture", "variant")
                        if document.get(k))
    history = [item for item in document.get("history") or [] if isinstance(item, dict)]
    return {
        "platform": platform, "created": str(document.get("created", "")),
        "entrypoint": config.get("Entrypoint"), "cmd": config.get("Cmd"),
        "workdir": config.get("WorkingDir"), "user": config.get("User"),
        "env": [str(e) for e in config.get("Env") or []][:500],
        "ports": sorted(str(p) for p in (config.get("ExposedPorts") or {}))[:200],
        "labels": {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
        if isinstance(config.get("Labels"), dict) else {},
        "history": [{"created_by": str(h.get("created_by", ""))[:2000],
                     "created": str(h.get("created", "")),
                     "empty": bool(h.get("empty_layer"))} for h in history[:500]],
    }


async def inspect(request: web.Request, repository: str, node: Node,
                  wanted_file: str | None) -> dict[str, Any]:
    """The contents view for the artifact's kind: {"kind": ..., data} or an error."""
    try:
        if node.kind.key == "helm":
            layer = _layer(node, (HELM_LAYER,))
            if layer is None:
                return {"kind": "helm", "error": "the chart has no chart layer"}
            path, size = await _blob_path(request, repository, layer["digest"])
            return {"kind": "helm", **await asyncio.to_thread(_chart, path, size)}
        if node.kind.key == "opa":
            layer = _layer(node, OPA_LAYERS)
            if layer is None:
                return {"kind": "opa", "error": "the bundle has no bundle layer"}
            path, size = await _blob_path(request, repository, layer["digest"])
            wanted = safe_name(wanted_file) if wanted_file else None
            return {"kind": "opa", **await asyncio.to_thread(_bundle, path, size, wanted)}
        config = node.config
        if node.kind.key == "image" and config and config.get("mediaType") in IMAGE_CONFIGS \
                and isinstance(config.get("digest"), str):
            size = config.get("size") if isinstance(config.get("size"), int) else 0
            return {"kind": "image", **await _config(request, repository, config["digest"],
                                                     size)}
    except ArchiveRefused as exc:
        return {"kind": node.kind.key, "error": f"Not opened: {exc}."}
    return {}
