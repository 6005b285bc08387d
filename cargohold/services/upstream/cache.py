"""The pull-through cache: cache repositories fill themselves from their upstream on demand.

- Manifests: fetched on the first pull (the repository is created then), stored exactly as
  sent; a tag is re-checked upstream with a HEAD once per `ptc_tag_ttl`, and the cached copy
  is served when the upstream cannot be reached (stale if error). Digests are never re-checked.
- Blobs: streamed to the clients while they are stored and hashed: on a filesystem store
  received on a thread into the upload file, which the clients read by sendfile as it fills
  (`blobreceive`, `http.growing`); on S3 teed from aiohttp to the first client and the store
  (`blobfetch`). The digest is verified before the blob is committed, so a failed or truncated
  transfer stores nothing (and no client receives the last piece). Concurrent pulls of the
  same blob cause one upstream fetch (single flight): in a process they share one transfer
  (on a filesystem store they all read the filling file; on S3 the others wait, then serve
  the stored blob), and across worker processes and nodes a per-digest lock
  (`storage.fetch_locks`) makes the others wait and then serve the stored blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from cargohold.services.storage import Storage
from cargohold.services.upstream.blobfetch import STORED, Fetch, tee
from cargohold.services.upstream.blobreceive import FileTransfer
from cargohold.services.upstream.client import MANIFEST_ACCEPT, UpstreamClient, UpstreamError
from cargohold.services.upstream.filling import Filling
from cargohold.services.upstream.rules import CacheTarget, RuleService
from cargohold.storage.ecr_settings import PULL_THROUGH_CACHE
from cargohold.storage.fetch_locks import KeyLock
from cargohold.storage.filesystem import FilesystemBlobStore
from cargohold.storage.metadata import ManifestRecord, NewManifest, TagImmutable, now_us
from cargohold.storage.repositories import RepositoryExists, RepositorySettings
from cargohold.storage.upstreams import UpstreamStore
from cargohold.wire.digest import Digest, digest_of, is_digest, parse_digest
from cargohold.wire.ecr import EcrError
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.manifest import OCI_INDEX, parse_manifest
from cargohold.wire.names import TAG_PATTERN

log = logging.getLogger(__name__)
LOCK_POLL_SECONDS = 0.05
READ_BUFSIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class BlobStream:
    """A blob arriving from upstream: its size (when the upstream said) and its bytes."""

    size: int | None
    chunks: AsyncIterator[bytes] | None  # None: a HEAD, or served from `filling`
    filling: Filling | None = None  # the upload file filling (a filesystem store)
    reader: int | None = None  # a descriptor of that file, the receiver's to close


class PullThroughCache:
    def __init__(self, storage: Storage, rules: RuleService) -> None:
        self.storage = storage
        self.rules = rules
        self.store = UpstreamStore(storage.database)
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, str | None, int | None], UpstreamClient] = {}
        self._fetches: dict[tuple[str, str], Fetch] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _client(self, target: CacheTarget) -> UpstreamClient:
        try:
            return await self.client_for(target)
        except EcrError as exc:
            raise RegistryError(ErrorCode.DENIED, f"pull-through cache rule "
                                f"'{target.rule.prefix}': {exc.message}") from None

    async def client_for(self, target: CacheTarget) -> UpstreamClient:
        """The client of a rule's upstream; ECR's secret errors when its credential fails."""
        rule = target.rule
        key = (target.base_url, rule.credential_arn, rule.updated_at)
        client = self._clients.get(key)
        if client is None:
            credential = await self.storage.db(self.rules.resolve_credential,
                                               rule.credential_arn)
            if self._session is None:
                settings = self.storage.settings.upstreams
                # A large read buffer: the upstream keeps sending while a piece is written
                # and passed on, instead of pausing every 128 KiB.
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                    total=None, connect=settings.connect_timeout, sock_read=settings.timeout),
                    read_bufsize=READ_BUFSIZE)
            client = UpstreamClient(self._session, target.base_url, credential)
            self._clients[key] = client
        return client

    async def push_refusal(self, repository: str) -> str | None:
        """Why a push into this repository is refused (a cache repository), or None."""
        target = await self.rules.target(repository)
        if target is None or target.rule.allow_push:
            return None
        return (f"{repository} is a pull-through cache of {target.base_url}/"
                f"{target.repository}: rule '{target.rule.prefix}' does not allow pushes")

    async def _ensure_repository(self, repository: str) -> None:
        """Create the cache repository the way CreateRepository does, if it is new."""
        if await self.storage.read(self.storage.repositories.get, repository) is not None:
            return
        with contextlib.suppress(RepositoryExists):
            await self.storage.db(self.storage.repositories.create, repository,
                                  RepositorySettings(), {}, PULL_THROUGH_CACHE)

    # -- manifests -------------------------------------------------------------------------

    async def manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        """The manifest, from the cache or its upstream; None when this is no cache repository
        (or the reference is malformed: the normal path refuses it)."""
        target = await self.rules.target(repository)
        if target is None:
            return None
        metadata = self.storage.metadata
        if is_digest(reference):
            digest = str(parse_digest(reference))
            local = await self.storage.read(metadata.get_manifest, repository, digest=digest)
            return local or await self._fetch_manifest(target, repository, digest, None)
        if not TAG_PATTERN.match(reference):
            return None
        local = await self.storage.read(metadata.get_manifest, repository, tag=reference)
        if local is None:
            return await self._fetch_manifest(target, repository, reference, reference)
        checked = await self.storage.read(self.store.tag_checked_at, repository, reference)
        ttl_us = self.storage.settings.upstreams.ptc_tag_ttl * 1e6
        if checked is not None and now_us() - checked < ttl_us:
            return local
        try:
            current = await self._head_manifest(target, reference)
            if current == local.digest:
                await self.storage.db(self.store.mark_tag_checked, repository, reference,
                                      now_us())
                return local
            return await self._fetch_manifest(target, repository, reference, reference)
        except (UpstreamError, RegistryError) as exc:
            log.warning("serving cached %s:%s, its upstream check failed: %s", repository,
                        reference, exc)
            return local

    async def _head_manifest(self, target: CacheTarget, tag: str) -> str | None:
        client = await self._client(target)
        response = await client.request("HEAD", f"/v2/{target.repository}/manifests/{tag}",
                                        target.repository, {"Accept": MANIFEST_ACCEPT})
        response.release()
        return response.headers.get("Docker-Content-Digest")

    async def _fetch_manifest(self, target: CacheTarget, repository: str, reference: str,
                              tag: str | None) -> ManifestRecord:
        client = await self._client(target)
        limit = self.storage.settings.max_manifest_size
        try:
            response = await client.request(
                "GET", f"/v2/{target.repository}/manifests/{reference}", target.repository,
                {"Accept": MANIFEST_ACCEPT})
            try:
                content = await _read_limited(response, limit, client)
                content_type = response.headers.get("Content-Type")
            finally:
                response.release()
        except UpstreamError as exc:
            raise exc.registry_error(ErrorCode.MANIFEST_UNKNOWN) from None
        expected = parse_digest(reference) if tag is None else None
        actual = digest_of(content, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise client.error(502, f"sent a manifest whose digest is {actual}, not "
                               f"{expected}").registry_error(ErrorCode.MANIFEST_UNKNOWN)
        try:
            parsed = parse_manifest(content, content_type)
        except RegistryError as exc:
            raise client.error(502, f"sent an invalid manifest: {exc.message}"
                               ).registry_error(ErrorCode.MANIFEST_UNKNOWN) from None
        manifest = NewManifest(
            digest=str(actual), media_type=parsed.media_type, content=content,
            artifact_type=parsed.artifact_type, config_media_type=parsed.config_media_type,
            subject_digest=parsed.subject.digest if parsed.subject else None,
            annotations=parsed.annotations, blob_digests=frozenset(parsed.required_blobs()),
            child_digests=frozenset(parsed.required_manifests()))
        await self._ensure_repository(repository)
        try:
            await self.storage.db(self.storage.metadata.put_manifest, repository, manifest,
                                  [tag] if tag else [], create=True, require_references=False,
                                  applied_for=PULL_THROUGH_CACHE)
        except TagImmutable:
            log.warning("%s:%s moved upstream but is immutable here", repository, tag)
        if tag is not None:
            await self.storage.db(self.store.mark_tag_checked, repository, tag, now_us())
        record = await self.storage.read(self.storage.metadata.get_manifest, repository,
                                         digest=manifest.digest)
        assert record is not None
        return record

    async def referrers(self, repository: str, subject: str,
                        artifact_type: str | None) -> dict[str, Any] | None:
        """The upstream's referrers index (when it has the API), else None."""
        target = await self.rules.target(repository)
        if target is None:
            return None
        digest = str(parse_digest(subject))
        client = await self._client(target)
        path = f"/v2/{target.repository}/referrers/{digest}"
        try:
            response = await client.request("GET", path, target.repository,
                                            {"Accept": OCI_INDEX})
            try:
                index = json.loads(await _read_limited(
                    response, self.storage.settings.max_manifest_size * 4, client))
            finally:
                response.release()
        except (UpstreamError, ValueError, RecursionError) as exc:
            log.info("referrers of %s from the cache only: %s", repository, exc)
            return None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            return None
        manifests = [entry for entry in index["manifests"] if isinstance(entry, dict) and (
            artifact_type is None or entry.get("artifactType") == artifact_type)]
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}

    # -- blobs -----------------------------------------------------------------------------

    async def blob(self, repository: str, digest: str, head: bool) -> BlobStream | None:
        """A blob that is not cached yet, from upstream; None when the normal path serves it
        (no cache repository, cached already, or fetched meanwhile by another request)."""
        target = await self.rules.target(repository)
        if target is None:
            return None
        parsed = parse_digest(digest)
        metadata = self.storage.metadata
        if await self.storage.read(metadata.blob_size, repository, str(parsed)) is not None:
            return None
        client = await self._client(target)
        path = f"/v2/{target.repository}/blobs/{parsed}"
        if head or await self.storage.blobs.locate(str(parsed)) is not None:
            # Known bytes (another repository has them) are linked once the upstream confirms
            # this repository has them too; a HEAD of an unknown blob just asks the upstream.
            try:
                response = await client.request("HEAD", path, target.repository)
            except UpstreamError as exc:
                raise exc.registry_error(ErrorCode.BLOB_UNKNOWN) from None
            response.release()
            location = await self.storage.blobs.locate(str(parsed))
            if location is None:
                return BlobStream(response.content_length, None)
            await self._ensure_repository(repository)
            await self.storage.db(metadata.link_blob, repository, str(parsed), location.size,
                                  create=True)
            return None
        key = (repository, str(parsed))
        fetch = self._fetches.get(key)
        leader = fetch is None
        if fetch is None:
            fetch = Fetch()
            self._fetches[key] = fetch
            fetch.task = asyncio.get_running_loop().create_task(
                self._fetch_blob(client, target, repository, parsed, fetch))
            fetch.task.add_done_callback(lambda task: self._done(key, task))
        try:
            ready = await asyncio.shield(fetch.ready)
        except UpstreamError as exc:
            raise exc.registry_error(ErrorCode.BLOB_UNKNOWN) from None
        if ready is STORED:  # another worker or node fetched it while we waited
            return await self.blob(repository, digest, head)
        if isinstance(ready, Filling):  # every client reads the upload file as it fills
            reader = ready.open_reader()
            if reader is not None:
                return BlobStream(ready.size, None, ready, reader)
        elif leader:  # the transfer streams to its first client
            return BlobStream(ready if isinstance(ready, int) else None, fetch.listen())
        assert fetch.task is not None
        try:
            await asyncio.shield(fetch.task)
        except UpstreamError as exc:
            raise exc.registry_error(ErrorCode.BLOB_UNKNOWN) from None
        return await self.blob(repository, digest, head)  # stored now: served normally

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._fetches.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("upstream fetch of %s failed: %s", key, task.exception())

    def _forget(self, repository: str, digest: Digest, fetch: Fetch) -> None:
        """A failed fetch takes no new pulls (they start afresh), even while it winds down."""
        key = (repository, str(digest))
        if self._fetches.get(key) is fetch:
            del self._fetches[key]

    async def _fetch_blob(self, client: UpstreamClient, target: CacheTarget, repository: str,
                          digest: Digest, fetch: Fetch) -> None:
        """Fetch under the digest's lock (single flight across workers and nodes): whoever
        waited for the lock finds the blob stored, and only fetches when the holder failed.
        A filesystem store receives on a thread into the upload file, which the clients read
        as it fills (`blobreceive`); otherwise the aiohttp transfer is teed (`blobfetch`)."""
        lock = KeyLock(self.storage.database, f"upstream-fetch:{digest}")
        path = f"/v2/{target.repository}/blobs/{digest}"
        transfer: FileTransfer | None = None
        response: aiohttp.ClientResponse | None = None
        try:
            try:
                while not await asyncio.to_thread(lock.try_acquire):
                    await asyncio.sleep(LOCK_POLL_SECONDS)
                if await self.storage.blobs.locate(str(digest)) is not None:
                    fetch.ready.set_result(STORED)
                    return
                blobs = self.storage.blobs
                if isinstance(blobs, FilesystemBlobStore):
                    settings = self.storage.settings.upstreams
                    transfer = FileTransfer(blobs, client, path, target.repository, digest,
                                            settings.connect_timeout, settings.timeout)
                    fetch.ready.set_result(await transfer.open())
                else:
                    response = await client.request("GET", path, target.repository)
                    fetch.ready.set_result(response.content_length)
            except BaseException as exc:
                self._forget(repository, digest, fetch)
                fetch.ready.set_exception(exc)
                fetch.ready.exception()  # retrieved here: the leader may have gone
                raise
            try:
                if transfer is not None:
                    written = await transfer.run()
                else:
                    assert response is not None
                    written = await tee(blobs, client, response, digest, fetch.offer)
                await self._ensure_repository(repository)
                await self.storage.db(self.storage.metadata.link_blob, repository,
                                      str(digest), written, create=True)
            except BaseException as exc:
                self._forget(repository, digest, fetch)
                if transfer is None:  # (a filling fails its clients itself)
                    await fetch.offer(exc if isinstance(exc, Exception) else
                                      ConnectionAbortedError("the upstream fetch was cancelled"))
                raise
        finally:
            if response is not None:
                response.release()
            if transfer is not None:
                transfer.close()
            await asyncio.shield(asyncio.to_thread(lock.release))


async def _read_limited(response: aiohttp.ClientResponse, limit: int,
                        client: UpstreamClient) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in response.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > limit:
                raise client.error(502, f"sent a manifest over {limit} bytes")
            chunks.append(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise client.error(None, f"transfer failed ({type(exc).__name__}: {exc})") from None
    return b"".join(chunks)
