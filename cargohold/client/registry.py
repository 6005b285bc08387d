"""OCI Distribution operations on top of :class:`Transport`: manifests, blobs, tags, referrers.

Uploads stream from disk in constant memory: HEAD first (skip what the registry has), a
cross-repository mount where the source is on the same registry, then either one monolithic
PUT (small blobs) or a chunked upload of PATCHes that, when the connection breaks, asks the
registry how much it holds (``GET`` on the session, its ``Range``) and resumes from there.
Downloads stream into a temporary file beside the destination, are verified against the
descriptor's size and digest and only then renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urljoin

import aiohttp

from cargohold.client import mediatypes as mt
from cargohold.client.auth import repository_scope
from cargohold.client.errors import ClientError, DigestMismatch, NotFound, RegistryError
from cargohold.client.reference import Reference, validate_digest
from cargohold.client.transport import (
    ConnectionLost,
    Transport,
    describe_exception,
    error_from_response,
)

MAX_MANIFEST_SIZE = 8 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024  # CARGOHOLD_CHUNK_SIZE overrides it (bytes)
READ_SIZE = 256 * 1024
MAX_RESUMES = 8
MAX_FRESH_STARTS = 2
MAX_DOWNLOAD_RETRIES = 3


class Task(Protocol):
    """A progress sink (a progress-bar row, or nothing)."""

    def advance(self, amount: int) -> None: ...

    def set_completed(self, completed: int) -> None: ...

    def finish(self, note: str = "") -> None: ...


class NullTask:
    def advance(self, amount: int) -> None:
        pass

    def set_completed(self, completed: int) -> None:
        pass

    def finish(self, note: str = "") -> None:
        pass


# ------------------------------------------------------------------------------ data types

@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> Descriptor:
        if not isinstance(data, dict):
            raise ClientError(f"{where}: a descriptor is not a JSON object")
        try:
            media_type = str(data["mediaType"]) if data.get("mediaType") else ""
            digest = str(data["digest"])
            size = int(data["size"])
        except (KeyError, TypeError, ValueError):
            raise ClientError(f"{where}: a descriptor lacks digest or size") from None
        if size < 0:
            raise ClientError(f"{where}: a descriptor has a negative size")
        validate_digest(digest)
        known = {"mediaType", "digest", "size", "annotations", "artifactType", "platform"}
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ClientError(f"{where}: descriptor annotations are not an object")
        return cls(media_type=media_type, digest=digest, size=size,
                   annotations={str(k): str(v) for k, v in annotations.items()},
                   artifact_type=data.get("artifactType") or None,
                   platform=data.get("platform") or None,
                   extra={k: v for k, v in data.items() if k not in known})

    @property
    def title(self) -> str | None:
        return self.annotations.get(mt.ANNOTATION_TITLE)


@dataclass
class Manifest:
    """A manifest or index exactly as the registry returned it."""

    data: bytes
    media_type: str
    digest: str
    _json: dict[str, Any] | None = None

    @property
    def json(self) -> dict[str, Any]:
        if self._json is None:
            try:
                parsed = json.loads(self.data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ClientError(f"manifest {self.digest} is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise ClientError(f"manifest {self.digest} is not a JSON object")
            self._json = parsed
        return self._json

    @property
    def is_index(self) -> bool:
        return mt.is_index(self.media_type)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size,
                          artifact_type=self.artifact_type(),
                          annotations=dict(self.json.get("annotations") or {}))

    def config(self) -> Descriptor | None:
        if self.is_index or "config" not in self.json:
            return None
        return Descriptor.from_dict(self.json["config"], f"manifest {self.digest}")

    def layers(self) -> list[Descriptor]:
        if self.is_index:
            return []
        return [Descriptor.from_dict(d, f"manifest {self.digest}")
                for d in self.json.get("layers") or []]

    def children(self) -> list[Descriptor]:
        if not self.is_index:
            return []
        return [Descriptor.from_dict(d, f"index {self.digest}")
                for d in self.json.get("manifests") or []]

    def subject(self) -> Descriptor | None:
        subject = self.json.get("subject")
        return Descriptor.from_dict(subject, f"manifest {self.digest}") if subject else None

    def blobs(self) -> list[Descriptor]:
        config = self.config()
        return ([config] if config else []) + self.layers()

    def artifact_type(self) -> str | None:
        """``artifactType``, else the config's media type (for an index: its artifactType)."""
        declared = self.json.get("artifactType")
        if declared:
            return str(declared)
        if self.is_index:
            return None
        config = self.json.get("config")
        if isinstance(config, dict) and config.get("mediaType"):
            return str(config["mediaType"])
        return None


@dataclass
class BlobSource:
    """Something to upload: a file on disk (streamed) or a small bytes object."""

    digest: str
    size: int
    media_type: str = "application/octet-stream"
    path: Path | None = None
    data: bytes | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str, label: str = "") -> BlobSource:
        return cls(digest=sha256_digest(data), size=len(data), media_type=media_type, data=data,
                   label=label)

    @classmethod
    def from_file(cls, path: Path, media_type: str, label: str = "") -> BlobSource:
        digest, size = file_digest(path)
        return cls(digest=digest, size=size, media_type=media_type, path=path,
                   label=label or path.name)

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size,
                          annotations=dict(self.annotations))

    async def chunks(self, start: int, end: int, task: Task) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the source, read lazily; progress advances as they go."""
        if self.data is not None:
            view = self.data[start:end]
            for pos in range(0, len(view), READ_SIZE):
                piece = view[pos:pos + READ_SIZE]
                task.advance(len(piece))
                yield piece
            return
        assert self.path is not None
        remaining = end - start
        with open(self.path, "rb") as handle:
            handle.seek(start)
            while remaining > 0:
                piece = handle.read(min(READ_SIZE, remaining))
                if not piece:
                    raise ClientError(f"{self.path} shrank while it was being uploaded")
                remaining -= len(piece)
                task.advance(len(piece))
                yield piece
                await asyncio.sleep(0)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_bytes(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def file_digest(path: Path, algorithm: str = "sha256") -> tuple[str, int]:
    hasher = hashlib.new(algorithm)
    size = 0
    try:
        with open(path, "rb") as handle:
            while True:
                piece = handle.read(1 << 20)
                if not piece:
                    break
                hasher.update(piece)
                size += len(piece)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    return f"{algorithm}:{hasher.hexdigest()}", size


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe=':')}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + query


def parse_range(header: str | None) -> int | None:
    """``Range: 0-1023`` (or ``bytes=0-1023``) -> 1024 bytes held; None when absent."""
    if not header:
        return None
    value = header.split("=", 1)[-1].strip()
    start, sep, end = value.partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        return None
    return int(end) + 1


def content_type(resp: aiohttp.ClientResponse) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()


def infer_media_type(data: bytes, header: str) -> str:
    if header in mt.ALL_MANIFEST_TYPES or (header and header not in (
            "application/json", "text/plain", "application/octet-stream")):
        return header
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return header or mt.OCI_MANIFEST
    if isinstance(parsed, dict):
        if parsed.get("mediaType"):
            return str(parsed["mediaType"])
        if "manifests" in parsed:
            return mt.OCI_INDEX
    return mt.OCI_MANIFEST


# ------------------------------------------------------------------------------ the client

@dataclass
class PutResult:
    digest: str
    subject: str | None  # the OCI-Subject header, when the registry processed a subject
    location: str | None = None


class Registry:
    def __init__(self, transport: Transport, chunk_size: int | None = None) -> None:
        self.transport = transport
        if chunk_size is None:
            configured = os.environ.get("CARGOHOLD_CHUNK_SIZE", "")
            chunk_size = int(configured) if configured.isdigit() else DEFAULT_CHUNK_SIZE
        self.chunk_size = max(1, chunk_size)

    # -------------------------------------------------------------- basics

    @staticmethod
    def _pull(ref: Reference) -> list[str]:
        return [repository_scope(ref.repository, "pull")]

    @staticmethod
    def _push(ref: Reference) -> list[str]:
        return [repository_scope(ref.repository, "pull", "push")]

    async def ping(self, host: str) -> None:
        """GET /v2/ with credentials: raises unless the registry accepts us."""
        resp = await self.transport.request("GET", host, "/v2/")
        if resp.status == 200:
            resp.release()
            return
        raise await error_from_response(resp, f"{host}")

    # -------------------------------------------------------------- manifests

    async def get_manifest(self, ref: Reference, reference: str | None = None,
                           accept: str = mt.ACCEPT_MANIFESTS) -> Manifest:
        target = reference or ref.reference
        if not target:
            raise ClientError(f"{ref}: a tag or digest is needed")
        resp = await self.transport.request(
            "GET", ref.host, f"/v2/{ref.repository}/manifests/{target}",
            scopes=self._pull(ref), headers={"Accept": accept})
        what = f"{ref.repo_ref}{'@' if ':' in target else ':'}{target}"
        if resp.status != 200:
            raise await error_from_response(resp, f"manifest {what}")
        async with resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
                raise ClientError(f"manifest {what} is larger than {MAX_MANIFEST_SIZE} bytes")
            try:
                data = await resp.content.read(MAX_MANIFEST_SIZE + 1)
                while len(data) <= MAX_MANIFEST_SIZE:
                    more = await resp.content.read(MAX_MANIFEST_SIZE + 1 - len(data))
                    if not more:
                        break
                    data += more
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ConnectionLost(f"reading manifest {what}: {describe_exception(exc)}"
                                     ) from None
            if len(data) > MAX_MANIFEST_SIZE:
                raise ClientError(f"manifest {what} is larger than {MAX_MANIFEST_SIZE} bytes")
            media_type = infer_media_type(data, content_type(resp))
            header_digest = resp.headers.get("Docker-Content-Digest")
        if ":" in target:
            algorithm = target.split(":", 1)[0]
            actual = digest_bytes(data, algorithm)
            if actual != target:
                raise DigestMismatch(f"manifest {what}: received content has digest {actual}; "
                                     "refusing it")
            digest = target
        else:
            digest = sha256_digest(data)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise DigestMismatch(f"manifest {what}: content digest {digest} differs from "
                                     f"the registry's Docker-Content-Digest {header_digest}")
        return Manifest(data=data, media_type=media_type, digest=digest)

    async def resolve(self, ref: Reference) -> Descriptor:
        """The descriptor a tag or digest points at (HEAD, falling back to GET)."""
        target = ref.reference
        if not target:
            raise ClientError(f"{ref}: a tag or digest is needed")
        resp = await self.transport.request(
            "HEAD", ref.host, f"/v2/{ref.repository}/manifests/{target}",
            scopes=self._pull(ref), headers={"Accept": mt.ACCEPT_MANIFESTS})
        resp.release()
        if resp.status == 200:
            digest = resp.headers.get("Docker-Content-Digest")
            length = resp.headers.get("Content-Length", "")
            media_type = content_type(resp)
            if digest and length.isdigit() and media_type in mt.ALL_MANIFEST_TYPES and (
                    ":" not in target or digest == target):
                return Descriptor(media_type=media_type, digest=digest, size=int(length))
        elif resp.status == 404:
            raise NotFound(f"manifest {ref} not found", 404)
        manifest = await self.get_manifest(ref)
        return Descriptor(media_type=manifest.media_type, digest=manifest.digest,
                          size=manifest.size, artifact_type=manifest.artifact_type())

    async def manifest_exists(self, ref: Reference, digest: str) -> bool:
        resp = await self.transport.request(
            "HEAD", ref.host, f"/v2/{ref.repository}/manifests/{digest}",
            scopes=self._pull(ref), headers={"Accept": mt.ACCEPT_MANIFESTS})
        resp.release()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise await error_from_response(resp, f"manifest {ref.repo_ref}@{digest}")

    async def put_manifest(self, ref: Reference, reference: str, data: bytes,
                           media_type: str) -> PutResult:
        resp = await self.transport.request(
            "PUT", ref.host, f"/v2/{ref.repository}/manifests/{reference}",
            scopes=self._push(ref), headers={"Content-Type": media_type}, body=lambda: data)
        sep = "@" if ":" in reference else ":"
        if resp.status not in (200, 201, 202):
            raise await error_from_response(resp, f"pushing manifest {ref.repo_ref}{sep}"
                                                  f"{reference}")
        resp.release()
        digest = sha256_digest(data)
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise DigestMismatch(f"registry stored manifest as {returned}, expected {digest}")
        return PutResult(digest=digest, subject=resp.headers.get("OCI-Subject"),
                         location=resp.headers.get("Location"))

    async def delete_manifest(self, ref: Reference, reference: str) -> None:
        resp = await self.transport.request(
            "DELETE", ref.host, f"/v2/{ref.repository}/manifests/{reference}",
            scopes=[repository_scope(ref.repository, "delete", "pull")])
        sep = "@" if ":" in reference else ":"
        if resp.status not in (200, 202, 204):
            raise await error_from_response(resp, f"deleting {ref.repo_ref}{sep}{reference}")
        resp.release()

    # -------------------------------------------------------------- listings

    async def _paginate(self, host: str, path: str, scopes: list[str], key: str,
                        what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        seen: set[str] = set()
        while url and url not in seen and len(seen) < 10_000:
            seen.add(url)
            resp = await self.transport.request("GET", host, url, scopes=scopes)
            if resp.status != 200:
                raise await error_from_response(resp, what)
            async with resp:
                try:
                    data = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ClientError, ValueError):
                    raise ClientError(f"{what}: the registry returned invalid JSON") from None
                link = resp.links.get("next")
                next_url = str(link.get("url")) if link else None
            page = (data or {}).get(key) or []
            items.extend(str(x) for x in page)
            url = urljoin(self.transport.base_url(host) + "/", next_url) if next_url else None
        return items

    async def list_tags(self, ref: Reference) -> list[str]:
        return await self._paginate(ref.host, f"/v2/{ref.repository}/tags/list?n=1000",
                                    self._pull(ref), "tags", f"tags of {ref.repo_ref}")

    async def catalog(self, host: str) -> list[str]:
        return await self._paginate(host, "/v2/_catalog?n=1000", ["registry:catalog:*"],
                                    "repositories", f"repositories of {host}")

    async def referrers(self, ref: Reference, digest: str,
                        artifact_type: str | None = None) -> tuple[list[Descriptor], str]:
        """Referrers of ``digest``: (descriptors, "api" or "tags")."""
        path = f"/v2/{ref.repository}/referrers/{digest}"
        params = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
        resp = await self.transport.request("GET", ref.host, path + params,
                                            scopes=self._pull(ref))
        if resp.status == 200 and content_type(resp) in (mt.OCI_INDEX, "application/json"):
            descriptors: list[Descriptor] = []
            filtered = "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
            async with resp:
                try:
                    data = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ClientError, ValueError):
                    raise ClientError(f"referrers of {digest}: invalid JSON") from None
                link = resp.links.get("next")
            descriptors.extend(Descriptor.from_dict(d, "referrers")
                               for d in (data or {}).get("manifests") or [])
            pages = 0
            while link and pages < 100:
                pages += 1
                url = urljoin(self.transport.base_url(ref.host) + "/", str(link.get("url")))
                more = await self.transport.request("GET", ref.host, url, scopes=self._pull(ref))
                if more.status != 200:
                    raise await error_from_response(more, f"referrers of {digest}")
                async with more:
                    data = await more.json(content_type=None)
                    link = more.links.get("next")
                descriptors.extend(Descriptor.from_dict(d, "referrers")
                                   for d in (data or {}).get("manifests") or [])
            if artifact_type and not filtered:
                descriptors = [d for d in descriptors if d.artifact_type == artifact_type]
            return descriptors, "api"
        if resp.status in (401, 403):
            raise await error_from_response(resp, f"referrers of {digest}")
        resp.release()
        # No referrers API: the tag schema `<alg>-<hex>` holds an index of the referrers.
        try:
            index = await self.get_manifest(ref, referrers_tag(digest), accept=mt.OCI_INDEX)
        except NotFound:
            return [], "tags"
        descriptors = index.children() if index.is_index else []
        if artifact_type:
            descriptors = [d for d in descriptors if d.artifact_type == artifact_type]
        return descriptors, "tags"

    async def add_to_referrers_tag(self, ref: Reference, subject_digest: str,
                                   referrer: Descriptor) -> None:
        """Maintain the ``<alg>-<hex>`` tag-schema index for a registry without the API."""
        tag = referrers_tag(subject_digest)
        try:
            current = await self.get_manifest(ref, tag, accept=mt.OCI_INDEX)
            existing = current.json.get("manifests") or [] if current.is_index else []
        except NotFound:
            existing = []
        if any(isinstance(d, dict) and d.get("digest") == referrer.digest for d in existing):
            return
        entry = referrer.to_dict()
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                 "manifests": [*existing, entry]}
        data = json.dumps(index, separators=(",", ":")).encode()
        await self.put_manifest(ref, tag, data, mt.OCI_INDEX)

    # -------------------------------------------------------------- blobs: reading

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        resp = await self.transport.request(
            "HEAD", ref.host, f"/v2/{ref.repository}/blobs/{digest}", scopes=self._pull(ref))
        resp.release()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise await error_from_response(resp, f"blob {ref.repo_ref}@{digest}")

    async def fetch_blob(self, ref: Reference, desc: Descriptor,
                         limit: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small blob (a config) in memory, verified."""
        if desc.size > limit:
            raise ClientError(f"blob {desc.digest} is {desc.size} bytes, more than {limit}")
        resp = await self.transport.request(
            "GET", ref.host, f"/v2/{ref.repository}/blobs/{desc.digest}", scopes=self._pull(ref))
        if resp.status != 200:
            raise await error_from_response(resp, f"blob {ref.repo_ref}@{desc.digest}")
        async with resp:
            try:
                data = await resp.content.read(desc.size + 1)
                while len(data) <= desc.size:
                    more = await resp.content.read(desc.size + 1 - len(data))
                    if not more:
                        break
                    data += more
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ConnectionLost(f"reading blob {desc.digest}: {describe_exception(exc)}"
                                     ) from None
        verify_bytes(data, desc, f"{ref.repo_ref}@{desc.digest}")
        return data

    async def download_blob(self, ref: Reference, desc: Descriptor, dest: Path,
                            task: Task | None = None) -> None:
        """Stream a blob to ``dest`` via a temporary file; verified before the rename."""
        task = task or NullTask()
        algorithm = desc.digest.split(":", 1)[0]
        what = f"{ref.repo_ref}@{desc.digest}"
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                hasher = hashlib.new(algorithm)
                written = 0
                attempts = 0
                while True:
                    headers = {"Range": f"bytes={written}-"} if written else {}
                    resp = await self.transport.request(
                        "GET", ref.host, f"/v2/{ref.repository}/blobs/{desc.digest}",
                        scopes=self._pull(ref), headers=headers)
                    if resp.status not in (200, 206):
                        raise await error_from_response(resp, f"blob {what}")
                    if written and resp.status == 200:  # the server ignored Range: restart
                        handle.seek(0)
                        handle.truncate()
                        hasher = hashlib.new(algorithm)
                        written = 0
                        task.set_completed(0)
                    try:
                        async with resp:
                            async for piece in resp.content.iter_chunked(READ_SIZE):
                                written += len(piece)
                                if written > desc.size:
                                    raise DigestMismatch(
                                        f"blob {what} is larger than its descriptor's "
                                        f"{desc.size} bytes (corrupted or tampered); nothing "
                                        "written")
                                hasher.update(piece)
                                handle.write(piece)
                                task.advance(len(piece))
                        break
                    except (TimeoutError, aiohttp.ClientPayloadError,
                            aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                        attempts += 1
                        if attempts > MAX_DOWNLOAD_RETRIES:
                            raise ConnectionLost(f"downloading blob {what}: "
                                                 f"{describe_exception(exc)}") from None
                        await asyncio.sleep(0.2 * attempts)
                actual = f"{algorithm}:{hasher.hexdigest()}"
                if written != desc.size or actual != desc.digest:
                    raise DigestMismatch(
                        f"blob {what} failed verification: got {written} bytes with digest "
                        f"{actual}, expected {desc.size} bytes (corrupted or tampered); nothing "
                        "written")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    # -------------------------------------------------------------- blobs: writing

    async def _start_upload(self, ref: Reference, scopes: list[str] | None = None,
                            params: str = "") -> tuple[int, str | None]:
        resp = await self.transport.request(
            "POST", ref.host, f"/v2/{ref.repository}/blobs/uploads/{params}",
            scopes=scopes or self._push(ref), headers={"Content-Length": "0"}, body=b"")
        if resp.status not in (201, 202):
            raise await error_from_response(resp, f"starting an upload to {ref.repo_ref}")
        resp.release()
        location = resp.headers.get("Location")
        if resp.status == 202 and not location:
            raise RegistryError(f"{ref.host} opened an upload without a Location header", 202)
        minimum = resp.headers.get("OCI-Chunk-Min-Length", "")
        if minimum.isdigit():
            self._min_chunk = int(minimum)
        return resp.status, location

    _min_chunk: int = 0

    async def upload_blob(self, ref: Reference, source: BlobSource, task: Task | None = None,
                          mount_from: Reference | None = None) -> str:
        """Make the blob present in ``ref``'s repository: "exists", "mounted" or "uploaded"."""
        task = task or NullTask()
        if await self.blob_exists(ref, source.digest):
            task.set_completed(source.size)
            task.finish("exists")
            return "exists"
        location: str | None = None
        if mount_from is not None and mount_from.host == ref.host and \
                mount_from.repository != ref.repository:
            scopes = [*self._push(ref), repository_scope(mount_from.repository, "pull")]
            status, location = await self._start_upload(
                ref, scopes, f"?mount={quote(source.digest, safe=':')}&from="
                             f"{quote(mount_from.repository, safe='/')}")
            if status == 201:
                task.set_completed(source.size)
                task.finish("mounted")
                return "mounted"
        fresh_starts = 0
        while True:
            if location is None:
                _, location = await self._start_upload(ref)
            assert location is not None
            try:
                if source.size <= self.chunk_size:
                    await self._put_whole(ref, location, source, task)
                else:
                    await self._put_chunked(ref, location, source, task)
                task.finish("uploaded")
                return "uploaded"
            except ConnectionLost:
                fresh_starts += 1
                if fresh_starts > MAX_FRESH_STARTS:
                    raise
                task.set_completed(0)
                location = None
                await asyncio.sleep(0.2 * fresh_starts)

    def _abs(self, ref: Reference, location: str) -> str:
        return urljoin(self.transport.base_url(ref.host) + "/", location)

    async def _put_whole(self, ref: Reference, location: str, source: BlobSource,
                         task: Task) -> None:
        url = with_query(self._abs(ref, location), digest=source.digest)

        def body() -> Any:
            task.set_completed(0)
            return source.chunks(0, source.size, task)

        resp = await self.transport.request(
            "PUT", ref.host, url, scopes=self._push(ref), body=body,
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(source.size)})
        await self._finish_put(resp, ref, source)

    async def _finish_put(self, resp: aiohttp.ClientResponse, ref: Reference,
                          source: BlobSource) -> None:
        if resp.status not in (201, 204):
            raise await error_from_response(resp, f"uploading blob {source.digest} to "
                                                  f"{ref.repo_ref}")
        resp.release()
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned != source.digest:
            raise DigestMismatch(f"registry stored blob as {returned}, expected "
                                 f"{source.digest}")

    async def _upload_status(self, ref: Reference, location: str) -> tuple[int, str]:
        resp = await self.transport.request("GET", ref.host, self._abs(ref, location),
                                            scopes=self._push(ref))
        if resp.status not in (200, 204):
            raise await error_from_response(resp, "checking an interrupted upload")
        resp.release()
        held = parse_range(resp.headers.get("Range")) or 0
        return held, resp.headers.get("Location") or location

    async def _resume_point(self, ref: Reference, location: str) -> tuple[int, str]:
        """Where an interrupted session stands. A registry that can no longer tell (the CNCF
        registry keeps the offset in a signed ``_state`` parameter of the Location that the
        lost answer carried) makes us start a fresh session instead."""
        try:
            return await self._upload_status(ref, location)
        except ConnectionLost:
            return await self._upload_status(ref, location)
        except RegistryError as exc:
            raise ConnectionLost(f"upload session on {ref.host} cannot be resumed ({exc})"
                                 ) from None

    async def _put_chunked(self, ref: Reference, location: str, source: BlobSource,
                           task: Task) -> None:
        chunk = max(self.chunk_size, self._min_chunk)
        offset = 0
        problems = 0
        while offset < source.size:
            end = min(offset + chunk, source.size)
            start = offset

            def body(start: int = start, end: int = end) -> Any:
                task.set_completed(start)
                return source.chunks(start, end, task)

            try:
                resp = await self.transport.request(
                    "PATCH", ref.host, self._abs(ref, location), scopes=self._push(ref),
                    body=body, headers={"Content-Type": "application/octet-stream",
                                        "Content-Range": f"{start}-{end - 1}",
                                        "Content-Length": str(end - start)})
            except ConnectionLost:
                problems += 1
                if problems > MAX_RESUMES:
                    raise
                await asyncio.sleep(min(0.1 * 2 ** problems, 2.0))
                offset, location = await self._resume_point(ref, location)
                task.set_completed(offset)
                continue
            if resp.status == 416:
                resp.release()
                problems += 1
                if problems > MAX_RESUMES:
                    raise ConnectionLost(f"upload of {source.digest} to {ref.repo_ref} could "
                                         "not be resumed (416)")
                offset, location = await self._resume_point(ref, location)
                task.set_completed(offset)
                continue
            if resp.status not in (202, 204):
                raise await error_from_response(resp, f"uploading blob {source.digest} to "
                                                      f"{ref.repo_ref}")
            resp.release()
            location = resp.headers.get("Location") or location
            held = parse_range(resp.headers.get("Range"))
            offset = end if held is None or held > end else max(held, start)
            task.set_completed(offset)
        url = with_query(self._abs(ref, location), digest=source.digest)
        resp = await self.transport.request(
            "PUT", ref.host, url, scopes=self._push(ref), body=b"",
            headers={"Content-Type": "application/octet-stream", "Content-Length": "0"})
        await self._finish_put(resp, ref, source)


def verify_bytes(data: bytes, desc: Descriptor, what: str) -> None:
    algorithm = desc.digest.split(":", 1)[0]
    actual = digest_bytes(data, algorithm)
    if len(data) != desc.size or actual != desc.digest:
        raise DigestMismatch(f"blob {what} failed verification: got {len(data)} bytes with "
                             f"digest {actual}, expected {desc.size} bytes (corrupted or "
                             "tampered)")


def referrers_tag(digest: str) -> str:
    algorithm, hexpart = digest.split(":", 1)
    return f"{algorithm}-{hexpart}"[:128]


async def gather_limited(limit: int, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run coroutine factories with at most ``limit`` at once; the first failure wins."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def run(job: Callable[[], Any]) -> Any:
        async with semaphore:
            return await job()

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
