"""Blobs: existence checks, verified downloads, and uploads that stream from disk and resume.

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
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from cargohold.client.auth import repository_scope
from cargohold.client.content import (
    MAX_MANIFEST_SIZE,
    READ_SIZE,
    BlobSource,
    Descriptor,
    NullTask,
    Task,
    verify_bytes,
)
from cargohold.client.errors import ClientError, DigestMismatch, RegistryError
from cargohold.client.reference import Reference
from cargohold.client.session import RegistrySession
from cargohold.client.transport import (
    ConnectionLost,
    describe_exception,
    error_from_response,
)

MAX_RESUMES = 8
MAX_FRESH_STARTS = 2
MAX_DOWNLOAD_RETRIES = 3


def ordinary_file_mode() -> int:
    """0666 less the umask (0644 under 022): what ``open()`` would create, as ``oras pull``
    does, rather than the 0600 of the temporary file a download starts in."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


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


class BlobOperations(RegistrySession):
    """Blobs: check, fetch, download, upload (mounted, monolithic or chunked)."""

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
                os.fchmod(handle.fileno(), ordinary_file_mode())
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

