"""The artifact graph: index -> manifests (platform) -> config and layers, with referrers."""

from __future__ import annotations

from typing import Any

from cargohold.client import mediatypes as mt
from cargohold.client.artifact import platform_string
from cargohold.client.content import Descriptor, Manifest
from cargohold.client.errors import ClientError, NotFound
from cargohold.client.reference import Reference
from cargohold.client.registry import Registry

MAX_DEPTH = 6
MAX_NODES = 2000


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


class TreeBuilder:
    def __init__(self, registry: Registry, ref: Reference, referrers: bool = True) -> None:
        self.registry = registry
        self.ref = ref
        self.referrers = referrers
        self.nodes = 0
        self.referrer_source: str | None = None

    async def build(self) -> dict[str, Any]:
        manifest = await self.registry.get_manifest(self.ref)
        node = await self._manifest_node(manifest, None, depth=0, seen=set())
        node["reference"] = str(self.ref)
        return node

    async def _manifest_node(self, manifest: Manifest, desc: Descriptor | None, depth: int,
                             seen: set[str]) -> dict[str, Any]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ClientError(f"graph of {self.ref} has more than {MAX_NODES} nodes")
        seen = seen | {manifest.digest}
        artifact_type = manifest.artifact_type() or (manifest.media_type if manifest.is_index
                                                     else None)
        node: dict[str, Any] = {
            "kind": "index" if manifest.is_index else "manifest",
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "artifactType": artifact_type,
            "friendlyType": self._friendly(manifest),
        }
        if desc is not None and desc.platform:
            node["platform"] = platform_string(desc.platform)
        annotations = manifest.json.get("annotations") or {}
        if annotations:
            node["annotations"] = annotations
        if manifest.is_index:
            children = []
            for child in manifest.children():
                if depth >= MAX_DEPTH or child.digest in seen:
                    continue
                try:
                    child_manifest = await self.registry.get_manifest(self.ref, child.digest)
                except NotFound:
                    children.append({"kind": "missing", "mediaType": child.media_type,
                                     "digest": child.digest, "size": child.size,
                                     "platform": platform_string(child.platform)})
                    continue
                children.append(await self._manifest_node(child_manifest, child, depth + 1,
                                                          seen))
            node["manifests"] = children
        else:
            config = manifest.config()
            if config is not None:
                node["config"] = self._blob_node(config, "config")
            node["layers"] = [self._blob_node(layer, "layer") for layer in manifest.layers()]
        if self.referrers and depth < MAX_DEPTH:
            descriptors, source = await self.registry.referrers(self.ref, manifest.digest)
            self.referrer_source = self.referrer_source or source
            referrers = []
            for referrer in descriptors:
                if referrer.digest in seen:
                    continue
                try:
                    child_manifest = await self.registry.get_manifest(self.ref, referrer.digest)
                except NotFound:
                    continue
                referrers.append(await self._manifest_node(child_manifest, referrer,
                                                           depth + 1, seen))
            node["referrers"] = referrers
        return node

    @staticmethod
    def _friendly(manifest: Manifest) -> str:
        if manifest.is_index:
            declared = manifest.json.get("artifactType")
            return mt.friendly_artifact_type(declared) if declared else \
                mt.friendly_artifact_type(manifest.media_type)
        return mt.friendly_artifact_type(manifest.artifact_type())

    @staticmethod
    def _blob_node(desc: Descriptor, kind: str) -> dict[str, Any]:
        node: dict[str, Any] = {"kind": kind, "mediaType": desc.media_type,
                                "digest": desc.digest, "size": desc.size,
                                "friendlyType": mt.friendly_blob_type(desc.media_type)}
        if desc.title:
            node["title"] = desc.title
        return node


def _label(node: dict[str, Any]) -> str:
    kind = node["kind"]
    size = human_size(int(node.get("size", 0)))
    if kind in ("index", "manifest"):
        what = node.get("friendlyType", "artifact")
        raw = node.get("artifactType") or node["mediaType"]
        platform = f" {node['platform']}" if node.get("platform") else ""
        return f"{kind}{platform} {node['digest']}  {what} [{raw}]  {size}"
    if kind == "missing":
        return f"manifest {node.get('platform', '')} {node['digest']}  (missing)"
    title = f"  {node['title']}" if node.get("title") else ""
    return (f"{kind} {node['digest']}  {node.get('friendlyType', 'blob')} "
            f"[{node['mediaType']}]  {size}{title}")


def _children(node: dict[str, Any]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    groups: list[tuple[str | None, list[dict[str, Any]]]] = []
    if node.get("manifests"):
        groups.append((None, node["manifests"]))
    blobs = ([node["config"]] if node.get("config") else []) + list(node.get("layers") or [])
    if blobs:
        groups.append((None, blobs))
    if node.get("referrers"):
        groups.append(("referrers", node["referrers"]))
    return groups


def render_tree(root: dict[str, Any]) -> str:
    lines = [str(root.get("reference", root.get("digest", "")))]

    def walk(node: dict[str, Any], prefix: str, last: bool) -> None:
        lines.append(prefix + ("└── " if last else "├── ") + _label(node))
        inner = prefix + ("    " if last else "│   ")
        entries: list[tuple[str, Any]] = []
        for heading, items in _children(node):
            if heading:
                entries.append(("heading", (heading, items)))
            else:
                entries.extend(("node", item) for item in items)
        for i, (kind, value) in enumerate(entries):
            is_last = i == len(entries) - 1
            if kind == "node":
                walk(value, inner, is_last)
            else:
                heading, items = value
                lines.append(inner + ("└── " if is_last else "├── ") + heading)
                sub = inner + ("    " if is_last else "│   ")
                for j, item in enumerate(items):
                    walk(item, sub, j == len(items) - 1)

    walk(root, "", True)
    return "\n".join(lines)
