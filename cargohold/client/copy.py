"""Copying artifacts between repositories and registries, optionally with their referrers."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.client.artifact import matches_platform, platform_string
from cargohold.client.content import BlobSource, Descriptor, Manifest
from cargohold.client.errors import ClientError
from cargohold.client.progress import Transfers, short_digest
from cargohold.client.reference import Reference
from cargohold.client.registry import Registry, gather_limited

MAX_MANIFESTS = 5000


@dataclass
class CopyStats:
    manifests: list[str] = field(default_factory=list)
    blobs: dict[str, str] = field(default_factory=dict)  # digest -> exists/mounted/copied
    referrers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for outcome in self.blobs.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"manifests": len(self.manifests), "referrers": len(self.referrers),
                "blobs": counts}


class Copier:
    def __init__(self, registry: Registry, src: Reference, dst: Reference,
                 transfers: Transfers, recursive: bool = False, platform: str | None = None,
                 concurrency: int = 3) -> None:
        self.registry = registry
        self.src = src
        self.dst = dst
        self.transfers = transfers
        self.recursive = recursive
        self.platform = platform
        self.concurrency = concurrency
        self.stats = CopyStats()
        self._done: set[str] = set()
        self._tmp = Path(tempfile.mkdtemp(prefix="cargohold-copy-"))
        self.dst_has_referrers_api: bool | None = None

    def cleanup(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def run(self) -> tuple[str, str, int]:
        """Copy the root; returns (digest, media type, size) of what the destination got."""
        try:
            root = await self.registry.get_manifest(self.src)
            if root.is_index and self.platform:
                children = [c for c in root.children()
                            if matches_platform(c.platform, self.platform)]
                if not children:
                    available = ", ".join(platform_string(c.platform)
                                          for c in root.children())
                    raise ClientError(f"{self.src} has no manifest for platform "
                                      f"{self.platform} (available: {available})")
                root = await self.registry.get_manifest(self.src, children[0].digest)
            await self._copy_graph(root, push_by_digest=False)
            tags = [self.dst.tag] if self.dst.tag else []
            for tag in tags:
                await self.registry.put_manifest(self.dst, tag, root.data, root.media_type)
            if not tags:
                await self.registry.put_manifest(self.dst, root.digest, root.data,
                                                 root.media_type)
            if self.recursive:
                await self._copy_referrers(root)
            return root.digest, root.media_type, root.size
        finally:
            self.cleanup()

    async def _copy_graph(self, manifest: Manifest, push_by_digest: bool) -> None:
        if manifest.digest in self._done:
            return
        self._done.add(manifest.digest)
        if len(self._done) > MAX_MANIFESTS:
            raise ClientError(f"more than {MAX_MANIFESTS} manifests to copy; giving up")
        if manifest.is_index:
            for child in manifest.children():
                child_manifest = await self.registry.get_manifest(self.src, child.digest)
                await self._copy_graph(child_manifest, push_by_digest=True)
                if self.recursive:
                    await self._copy_referrers(child_manifest)
        else:
            await self._copy_blobs(manifest.blobs())
        if push_by_digest:
            await self._put(manifest)

    async def _put(self, manifest: Manifest) -> None:
        result = await self.registry.put_manifest(self.dst, manifest.digest, manifest.data,
                                                  manifest.media_type)
        self.stats.manifests.append(manifest.digest)
        subject = manifest.subject()
        if subject is not None and not result.subject:
            await self.registry.add_to_referrers_tag(self.dst, subject.digest,
                                                     manifest.descriptor())

    async def _copy_referrers(self, manifest: Manifest) -> None:
        descriptors, _ = await self.registry.referrers(self.src, manifest.digest)
        for desc in descriptors:
            if desc.digest in self._done:
                continue
            referrer = await self.registry.get_manifest(self.src, desc.digest)
            await self._copy_graph(referrer, push_by_digest=False)
            await self._put(referrer)
            self.stats.referrers.append(referrer.digest)
            await self._copy_referrers(referrer)

    async def _copy_blobs(self, blobs: list[Descriptor]) -> None:
        def job(desc: Descriptor) -> Any:
            async def run() -> None:
                self.stats.blobs[desc.digest] = await self._copy_blob(desc)
            return run

        unique = {d.digest: d for d in blobs if d.digest not in self.stats.blobs}
        await gather_limited(self.concurrency, [job(d) for d in unique.values()])

    async def _copy_blob(self, desc: Descriptor) -> str:
        label = short_digest(desc.digest)
        if await self.registry.blob_exists(self.dst, desc.digest):
            return "exists"
        if self.src.host == self.dst.host:
            source = BlobSource(digest=desc.digest, size=desc.size, media_type=desc.media_type,
                                data=None, path=None, label=label)
            task = self.transfers.task(f"⇢ {label}", desc.size)
            # A mount needs no bytes; if the registry declines, fall through to a real copy.
            try:
                outcome = await self._try_mount(source, task)
            except ClientError:
                outcome = None
            if outcome:
                return outcome
        path = self._tmp / desc.digest.replace(":", "-")
        task = self.transfers.task(f"↓ {label}", desc.size)
        await self.registry.download_blob(self.src, desc, path, task)
        try:
            source = BlobSource(digest=desc.digest, size=desc.size, media_type=desc.media_type,
                                path=path, label=label)
            up = self.transfers.task(f"↑ {label}", desc.size)
            outcome = await self.registry.upload_blob(self.dst, source, up)
        finally:
            path.unlink(missing_ok=True)
        return "copied" if outcome == "uploaded" else outcome

    async def _try_mount(self, source: BlobSource, task: Any) -> str | None:
        from urllib.parse import quote

        from cargohold.client.auth import repository_scope

        scopes = [repository_scope(self.dst.repository, "pull", "push"),
                  repository_scope(self.src.repository, "pull")]
        resp = await self.registry.transport.request(
            "POST", self.dst.host,
            f"/v2/{self.dst.repository}/blobs/uploads/?mount={quote(source.digest, safe=':')}"
            f"&from={quote(self.src.repository, safe='/')}",
            scopes=scopes, headers={"Content-Length": "0"}, body=b"")
        resp.release()
        if resp.status == 201:
            task.set_completed(source.size)
            task.finish("mounted")
            return "mounted"
        location = resp.headers.get("Location")
        if resp.status == 202 and location:  # a session was opened instead: cancel it
            cancel = await self.registry.transport.request(
                "DELETE", self.dst.host, location, scopes=scopes)
            cancel.release()
        return None
