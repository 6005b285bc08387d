"""Pushing and pulling artifacts: files and folders as layers of an OCI image manifest."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.client import mediatypes as mt
from cargohold.client.content import BlobSource, Descriptor, Manifest
from cargohold.client.errors import ClientError, UnsafePath
from cargohold.client.files import extract_archive, pack_folder, safe_join
from cargohold.client.manifests import PutResult
from cargohold.client.progress import Transfers, short_digest
from cargohold.client.reference import Reference
from cargohold.client.registry import Registry, gather_limited

MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                           r"/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(?:\s*;.*)?$")
DEFAULT_CONCURRENCY = 3


def valid_media_type(value: str) -> bool:
    return bool(MEDIA_TYPE_RE.match(value))


@dataclass
class FileSpec:
    path: Path
    media_type: str | None = None


def parse_file_arg(arg: str, what: str = "file") -> FileSpec:
    """``path[:media/type]``; a path that exists as written wins over a split at ':'."""
    if os.path.lexists(arg):
        return FileSpec(Path(arg))
    if ":" in arg:
        path, media_type = arg.rsplit(":", 1)
        if path and valid_media_type(media_type):
            if not os.path.lexists(path):
                raise ClientError(f"{what} {path!r} does not exist")
            return FileSpec(Path(path), media_type)
        if path and os.path.lexists(path):
            raise ClientError(f"invalid media type {media_type!r} for {path!r} "
                              "(expected type/subtype)")
    raise ClientError(f"{what} {arg!r} does not exist")


def parse_annotations(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ClientError(f"invalid annotation {pair!r} (expected key=value)")
        out[key.strip()] = value
    return out


def load_annotation_file(path: Path) -> dict[str, dict[str, str]]:
    """oras' format: ``{"$manifest": {...}, "$config": {...}, "<file title>": {...}}``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClientError(f"annotation file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ClientError(f"annotation file {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ClientError(f"annotation file {path} must map names to objects of strings")
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data.items()}


@dataclass
class PreparedLayers:
    layers: list[BlobSource]
    tmpdir: Path

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def prepare_layers(specs: list[FileSpec], per_file: dict[str, dict[str, str]] | None = None
                   ) -> PreparedLayers:
    """Files stay where they are; folders are packed into a temporary tar.gz."""
    tmpdir = Path(tempfile.mkdtemp(prefix="cargohold-push-"))
    layers: list[BlobSource] = []
    titles: set[str] = set()
    try:
        for spec in specs:
            path = spec.path
            title = path.resolve().name if path.name in ("", ".", "..") else path.name
            if title in titles:
                raise ClientError(f"two layers would be titled {title!r}; rename one")
            titles.add(title)
            if path.is_dir():
                packed = tmpdir / f"{len(layers)}-{title}.tar.gz"
                tar_digest, _ = pack_folder(path, packed, prefix=title)
                source = BlobSource.from_file(packed, spec.media_type or mt.OCI_LAYER_GZIP,
                                              label=title + "/")
                source.annotations = {mt.ANNOTATION_TITLE: title,
                                      mt.ANNOTATION_ORAS_DIGEST: tar_digest,
                                      mt.ANNOTATION_ORAS_UNPACK: "true"}
            elif path.is_file():
                source = BlobSource.from_file(path, spec.media_type or mt.OCI_LAYER_TAR,
                                              label=title)
                source.annotations = {mt.ANNOTATION_TITLE: title}
            else:
                raise ClientError(f"{path} is neither a file nor a folder")
            if per_file and title in per_file:
                source.annotations.update(per_file[title])
            layers.append(source)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return PreparedLayers(layers, tmpdir)


def build_manifest(config: Descriptor, layers: list[Descriptor], *,
                   artifact_type: str | None = None, annotations: dict[str, str] | None = None,
                   subject: Descriptor | None = None) -> bytes:
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest["config"] = config.to_dict()
    manifest["layers"] = [layer.to_dict() for layer in layers]
    if subject is not None:
        manifest["subject"] = {"mediaType": subject.media_type, "digest": subject.digest,
                               "size": subject.size}
    if annotations:
        manifest["annotations"] = dict(annotations)
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()


async def upload_all(registry: Registry, ref: Reference, sources: list[BlobSource],
                     transfers: Transfers, concurrency: int = DEFAULT_CONCURRENCY,
                     mount_from: Reference | None = None) -> dict[str, str]:
    """Upload blobs concurrently; returns digest -> "exists" | "mounted" | "uploaded"."""
    unique: dict[str, BlobSource] = {}
    for source in sources:
        unique.setdefault(source.digest, source)

    def job(source: BlobSource) -> Any:
        async def run() -> tuple[str, str]:
            task = transfers.task(f"↑ {source.label or short_digest(source.digest)}",
                                  source.size)
            outcome = await registry.upload_blob(ref, source, task, mount_from)
            return source.digest, outcome
        return run

    results = await gather_limited(concurrency, [job(s) for s in unique.values()])
    return dict(results)


async def push_manifest(registry: Registry, ref: Reference, data: bytes, media_type: str,
                        tags: list[str], subject: Descriptor | None,
                        artifact_type: str | None, annotations: dict[str, str] | None
                        ) -> PutResult:
    """PUT the manifest under each tag (or by digest) and keep the tag-schema referrers index
    up to date when the registry did not process the subject itself."""
    result: PutResult | None = None
    for tag in tags or []:
        result = await registry.put_manifest(ref, tag, data, media_type)
    if result is None:
        from cargohold.client.content import sha256_digest

        result = await registry.put_manifest(ref, sha256_digest(data), data, media_type)
    if subject is not None and not result.subject:
        referrer = Descriptor(media_type=media_type, digest=result.digest, size=len(data),
                              artifact_type=artifact_type, annotations=dict(annotations or {}))
        await registry.add_to_referrers_tag(ref, subject.digest, referrer)
    return result


# ------------------------------------------------------------------------------ pulling

def platform_string(platform: dict[str, Any] | None) -> str:
    if not platform:
        return "unknown"
    parts = [str(platform.get("os", "?")), str(platform.get("architecture", "?"))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def matches_platform(platform: dict[str, Any] | None, wanted: str) -> bool:
    if not platform:
        return False
    want = wanted.split("/")
    have = platform_string(platform).split("/")
    return have[:len(want)] == want


async def select_manifest(registry: Registry, ref: Reference, manifest: Manifest,
                          platform: str | None) -> Manifest:
    """For an index, the child matching ``platform`` (or the only child)."""
    if not manifest.is_index:
        return manifest
    children = manifest.children()
    if platform:
        chosen = [c for c in children if matches_platform(c.platform, platform)]
        if not chosen:
            raise ClientError(f"{ref} has no manifest for platform {platform} (available: "
                              f"{', '.join(platform_string(c.platform) for c in children)})")
    elif len(children) == 1:
        chosen = children
    else:
        raise ClientError(f"{ref} is an index of {len(children)} manifests; choose one with "
                          "--platform (available: "
                          f"{', '.join(platform_string(c.platform) for c in children)})")
    return await registry.get_manifest(ref, chosen[0].digest)


@dataclass
class PulledFile:
    path: str
    digest: str
    size: int
    media_type: str
    unpacked: bool = False
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "digest": self.digest, "size": self.size,
                               "mediaType": self.media_type}
        if self.unpacked:
            out["unpacked"] = True
        return out


@dataclass
class PullResult:
    reference: str
    digest: str
    files: list[PulledFile]
    skipped: list[Descriptor]


async def pull_layers(registry: Registry, ref: Reference, manifest: Manifest, outdir: Path,
                      transfers: Transfers, media_types: list[str] | None = None,
                      concurrency: int = DEFAULT_CONCURRENCY, unpack: bool = True,
                      rename: dict[str, str] | None = None) -> PullResult:
    """Download titled layers into ``outdir``: everything is fetched and verified in a staging
    folder first, so a bad digest or an unsafe title leaves nothing behind."""
    layers = manifest.layers()
    if media_types:
        layers = [d for d in layers if d.media_type in media_types]
    planned: list[tuple[Descriptor, str]] = []
    skipped: list[Descriptor] = []
    for layer in layers:
        title = (rename or {}).get(layer.digest) or layer.title
        if not title:
            skipped.append(layer)
            continue
        planned.append((layer, title))
    created = not outdir.exists()
    if outdir.exists() and not outdir.is_dir():
        raise ClientError(f"{outdir} exists and is not a folder")
    # Validate every destination before any byte is written.
    probe_root = outdir if outdir.exists() else outdir.resolve()
    targets: dict[str, Path] = {}
    for layer, title in planned:
        target = safe_join(probe_root, title, f"layer {short_digest(layer.digest)}")
        if title in targets:
            raise ClientError(f"two layers are titled {title!r}; refusing to pull")
        targets[title] = target
    if not planned:
        return PullResult(str(ref), manifest.digest, [], skipped)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClientError(f"cannot create {outdir}: {exc.strerror or exc}") from None
    staging = Path(tempfile.mkdtemp(dir=outdir, prefix=".cargohold-pull-"))
    try:
        def job(index: int, layer: Descriptor, title: str) -> Any:
            async def run() -> None:
                task = transfers.task(f"↓ {title}", layer.size)
                await registry.download_blob(ref, layer, staging / f"{index}.blob", task)
                task.finish("verified")
            return run

        await gather_limited(concurrency, [job(i, layer, title)
                                           for i, (layer, title) in enumerate(planned)])
        results: list[PulledFile] = []
        # Unpacked folders: check their members before anything is moved into place.
        for i, (layer, title) in enumerate(planned):
            if unpack and layer.annotations.get(mt.ANNOTATION_ORAS_UNPACK) == "true":
                from cargohold.client.files import check_archive

                check_archive(staging / f"{i}.blob", outdir, f"layer {title!r}")
        for i, (layer, title) in enumerate(planned):
            blob = staging / f"{i}.blob"
            target = targets[title]
            if unpack and layer.annotations.get(mt.ANNOTATION_ORAS_UNPACK) == "true":
                names = extract_archive(blob, outdir, f"layer {title!r}")
                results.append(PulledFile(title, layer.digest, layer.size, layer.media_type,
                                          True, names))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                raise ClientError(f"{target} is a folder; cannot write layer {title!r} there")
            os.replace(blob, target)
            results.append(PulledFile(title, layer.digest, layer.size, layer.media_type))
        return PullResult(str(ref), manifest.digest, results, skipped)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(outdir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["FileSpec", "PullResult", "PulledFile", "UnsafePath", "build_manifest",
           "parse_annotations", "parse_file_arg", "prepare_layers", "pull_layers",
           "push_manifest", "select_manifest", "upload_all"]
