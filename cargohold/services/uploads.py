"""Upload sessions: monolithic, chunked, single-request and ECR-part uploads, completed by
verifying the digest and publishing the blob."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cargohold.services import metrics
from cargohold.services.recent import Recent
from cargohold.services.resumable_hash import ResumableHash, new_hash, restore_hash
from cargohold.services.retention.pins import pin_upload_blob, pinned_digest
from cargohold.services.storage import Storage
from cargohold.services.upload_chunks import (
    ChunkRange,
    ChunkSizeMismatch,
    UploadState,
    chunk_length,
    hashed,
    name_unknown,
    range_error,
    size_mismatch,
    unknown_upload,
)
from cargohold.storage.blobstore import (
    BlobUnverified,
    UploadConflict,
    UploadMissing,
    UploadOffsetMismatch,
    UploadWriter,
    valid_upload_id,
)
from cargohold.storage.exclusive import run_exclusively
from cargohold.storage.metadata import RepositoryNotFound, UploadRecord, now_us
from cargohold.storage.upload_progress import UploadProgressStore
from cargohold.wire.digest import ALGORITHMS, Digest, parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError

log = logging.getLogger(__name__)
HASHER_CACHE_SIZE = 512
FRESH_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class _Resumed:
    """Where an upload stands at an acknowledged size: its running digest and the blob
    store's scratch state."""

    algorithm: str
    size: int
    hasher: ResumableHash
    scratch_state: str | None


class UploadService:
    """Upload sessions: the bytes go to the blob store's scratch area, the session to the DB.

    Digests are computed while bytes stream in. Each acknowledged chunk stores the running
    hash's state and the blob store's scratch state with the new size, in one transaction
    (storage/upload_progress.py); a chunk that arrives at another node (or after a restart)
    resumes from them, so sessions need no sticky routing and the finishing node never re-reads
    the blob. A worker also keeps the sessions it served in memory, to skip that read, and
    the records of the sessions it opened, to skip reading one back while it is untouched.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._progress = UploadProgressStore(storage.database)
        self._hashers: Recent[_Resumed] = Recent(HASHER_CACHE_SIZE)
        self._fresh: Recent[UploadRecord] = Recent(FRESH_CACHE_SIZE)  # as opened here

    @property
    def _create(self) -> bool:
        return self.storage.settings.create_on_push

    async def start(self, repository: str, algorithm: str = "sha256") -> UploadState:
        record = await self._start(repository, algorithm)
        self._fresh.put(record.id, record)
        return UploadState(record.id, 0)

    async def _start(self, repository: str, algorithm: str) -> UploadRecord:
        """A new session, and its record as created (no need to read it back)."""
        if algorithm not in ALGORITHMS:
            raise RegistryError(ErrorCode.DIGEST_INVALID,
                                f"unsupported digest algorithm {algorithm!r}")
        upload_id = str(uuid.uuid4())
        await self.storage.blobs.create_upload(upload_id)
        try:
            created_at = await self.storage.write(self.storage.metadata.create_upload,
                                                  repository, upload_id, algorithm,
                                                  create=self._create)
        except RepositoryNotFound:
            await self.storage.blobs.delete_upload(upload_id)
            raise name_unknown(repository) from None
        metrics.labelled(metrics.BLOB_UPLOADS, "started").inc()
        return UploadRecord(upload_id, repository, algorithm, 0, 0, False, created_at)

    async def status(self, repository: str, upload_id: str) -> UploadState:
        record = await self.session(repository, upload_id)
        return UploadState(upload_id, record.size)

    async def append(self, repository: str, upload_id: str, body: AsyncIterator[bytes],
                     chunk_range: ChunkRange | None, content_length: int | None) -> UploadState:
        async with self._writer(repository, upload_id) as (writer, record):
            size = await self._write_chunk(writer, record, body, chunk_range, content_length,
                                           acknowledge=True)
        return UploadState(upload_id, size)

    async def complete(self, repository: str, upload_id: str, digest: str,
                       body: AsyncIterator[bytes] | None, chunk_range: ChunkRange | None,
                       content_length: int | None,
                       created: UploadRecord | None = None) -> tuple[Digest, int]:
        """Take the last chunk (if any), verify the whole blob's digest, and publish it.
        `created`: the record of a session this request itself just created."""
        try:
            result = await self._complete(repository, upload_id, digest, body, chunk_range,
                                          content_length, created)
        except Exception:
            metrics.labelled(metrics.BLOB_UPLOADS, "failed").inc()
            raise
        metrics.labelled(metrics.BLOB_UPLOADS, "completed").inc()
        return result

    async def _complete(self, repository: str, upload_id: str, digest: str,
                        body: AsyncIterator[bytes] | None, chunk_range: ChunkRange | None,
                        content_length: int | None,
                        created: UploadRecord | None) -> tuple[Digest, int]:
        expected = parse_digest(digest)
        if body is not None and getattr(self.storage.blobs, "prefers_direct_writes", False):
            direct_size = await self._complete_direct(repository, upload_id, expected, body,
                                                      chunk_range, content_length, created)
            if direct_size is not None:
                return expected, direct_size
        try:
            async with self._writer(repository, upload_id, created) as (writer, record):
                completed_size = await self._complete_held(writer, record, repository, expected,
                                                           body, chunk_range, content_length)
        except RegistryError as exc:
            if exc.code is not ErrorCode.BLOB_UPLOAD_UNKNOWN:
                raise
            completed_size = await self._finish_interrupted(
                repository, upload_id, expected, 0 if body is None else content_length)
            if completed_size is None:
                raise
        if completed_size is None:
            raise unknown_upload(upload_id)
        return expected, completed_size

    async def _complete_held(self, writer: UploadWriter, record: UploadRecord, repository: str,
                             expected: Digest, body: AsyncIterator[bytes] | None,
                             chunk_range: ChunkRange | None, content_length: int | None,
                             ) -> int | None:
        """Verify and publish the session this request holds; None if it was gone by the
        time its transaction ran."""
        upload_id = record.id
        if body is not None:
            # The last chunk is acknowledged together with the blob, in one transaction.
            await self._write_chunk(writer, record, body, chunk_range,
                                    content_length, acknowledge=False)
        resumed = await self._resume(record if body is None else None, upload_id,
                                     expected.algorithm)
        size, hasher = resumed.size, resumed.hasher
        self._hashers.pop(upload_id)
        if hasher.hexdigest() != expected.hex:
            await self.storage.blobs.delete_upload(upload_id)
            await self.storage.write(self.storage.metadata.delete_upload, repository,
                                     upload_id)
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": str(expected)})
        await pin_upload_blob(self.storage, upload_id, str(expected))
        await self.storage.blobs.commit_upload(upload_id, size, str(expected),
                                               resumed.scratch_state)
        completed = await self.storage.write(self.storage.metadata.complete_upload,
                                             repository, upload_id, str(expected), size)
        return size if completed else None

    async def _finish_interrupted(self, repository: str, upload_id: str, expected: Digest,
                                  body_length: int | None) -> int | None:
        """The size of a completion that a crash cut off between moving the verified bytes
        into place and its transaction, now finished; None when that is not what happened.

        Then the session is still there but its bytes are not: they are the blob, already
        in place, and the session's pin names the digest they verified as. A client resuming
        from the session's size with the same final request finds it done, as it would have
        without the crash."""
        record = await self.storage.read(self.storage.metadata.get_upload, repository,
                                         upload_id)
        if record is None or body_length is None:
            return None
        if await pinned_digest(self.storage, upload_id) != str(expected):
            return None
        location = await self.storage.blobs.locate(str(expected))
        if location is None or location.size != record.size + body_length:
            return None
        completed = await self.storage.write(self.storage.metadata.complete_upload, repository,
                                             upload_id, str(expected), location.size)
        return location.size if completed else None

    async def upload_whole(self, repository: str, digest: str, body: AsyncIterator[bytes],
                           content_length: int | None) -> tuple[Digest, int]:
        """A single-request upload (`POST ?digest=`)."""
        expected = parse_digest(digest)
        record = await self._start(repository, expected.algorithm)
        try:
            return await self.complete(repository, record.id, digest, body, None,
                                       content_length, created=record)
        except BaseException:
            await self.cancel(repository, record.id, missing_ok=True)
            raise

    async def cancel(self, repository: str, upload_id: str, missing_ok: bool = False) -> None:
        if not valid_upload_id(upload_id):
            raise unknown_upload(upload_id)
        removed = await self.storage.write(self.storage.metadata.delete_upload, repository,
                                           upload_id)
        self._hashers.pop(upload_id)
        self._fresh.pop(upload_id)
        if removed:
            await self.storage.blobs.delete_upload(upload_id)
        elif not missing_ok:
            raise unknown_upload(upload_id)

    async def purge_stale(self, max_idle_seconds: float) -> int:
        """Drop upload sessions idle for longer than the limit, with their scratch data."""
        idle_since = now_us() - int(max_idle_seconds * 1e6)
        stale = await self.storage.db(self.storage.metadata.remove_stale_uploads, idle_since)
        # Scratch data no session owns (a crash between creating it and recording the session).
        idle = await self.storage.blobs.idle_uploads(idle_since / 1e6)
        owned = await self.storage.db(self.storage.metadata.known_uploads, idle) | set(stale)
        stale += [upload_id for upload_id in idle if upload_id not in owned]
        for upload_id in stale:
            self._hashers.pop(upload_id)
            self._fresh.pop(upload_id)
            await self.storage.blobs.delete_upload(upload_id)
        if stale:
            log.info("purged %d upload sessions idle for over %.0f h", len(stale),
                     max_idle_seconds / 3600)
        return len(stale)

    async def purge_periodically(self, max_idle_seconds: float, every: float) -> None:
        """Purge now and then, on one node at a time (the others skip their turn)."""
        while True:
            await asyncio.sleep(every * random.uniform(0.5, 1.5))
            try:
                await run_exclusively(self.storage.database, "upload-purge",
                                      lambda: self.purge_stale(max_idle_seconds))
            except Exception:
                log.exception("purging stale upload sessions failed")

    async def mount(self, repository: str, digest: str, source: str) -> bool:
        """Link a blob from another repository; False when it cannot be mounted."""
        parsed = parse_digest(digest)
        try:
            return await self.storage.write(self.storage.metadata.mount_blob, repository, source,
                                         str(parsed), create=self._create)
        except RepositoryNotFound:
            raise name_unknown(repository) from None

    # -- internals -------------------------------------------------------------------------

    async def session(self, repository: str, upload_id: str) -> UploadRecord:
        if not valid_upload_id(upload_id):
            raise unknown_upload(upload_id)
        record = await self.storage.read(self.storage.metadata.get_upload, repository, upload_id)
        if record is None:
            raise unknown_upload(upload_id)
        return record

    @contextlib.asynccontextmanager
    async def _writer(self, repository: str, upload_id: str, created: UploadRecord | None = None,
                      ) -> AsyncIterator[tuple[UploadWriter, UploadRecord]]:
        """Hold the session exclusively, with its record read under that hold; or, for a
        session this request just `created`, that record: nobody else knows its id yet, so
        it cannot have changed (a single-request upload reads nothing back). Nor can a session
        this worker opened whose scratch data is still untouched: its size and hash state
        change only with a chunk written there first. One gone meanwhile (cancelled, or
        completed elsewhere) is found gone by this request's own transaction, as when the
        record is read and the session goes right after."""
        if not valid_upload_id(upload_id):
            raise unknown_upload(upload_id)
        opened = self._fresh.pop(upload_id)
        try:
            async with self.storage.blobs.open_upload(upload_id) as writer:
                if created is None and opened is not None and opened.repository == repository \
                        and writer.untouched():
                    created = opened
                yield writer, created or await self.session(repository, upload_id)
        except UploadConflict:
            raise RegistryError(ErrorCode.RANGE_INVALID, "another request is writing this upload",
                                {"upload": upload_id}) from None
        except UploadMissing:
            raise unknown_upload(upload_id) from None

    async def _resume(self, record: UploadRecord | None, upload_id: str,
                      algorithm: str) -> _Resumed:
        """The upload's running hash and scratch state at its acknowledged size: from this
        worker's memory, else from the database, else (no exportable hash state) rebuilt by
        reading the stored bytes. `record` None: the state this worker just left in memory."""
        cached = self._hashers.pop(upload_id)
        scratch_state = hash_state = None
        if record is None:
            assert cached is not None
            if cached.algorithm == algorithm:
                return cached
            size, scratch_state = cached.size, cached.scratch_state  # completed as another alg
        elif cached is not None and cached.algorithm == algorithm and cached.size == record.size:
            return cached
        else:
            # The states saved with the acknowledged size come with the session's record.
            size, scratch_state, hash_state = record.size, record.scratch_state, record.hash_state
        hasher = restore_hash(algorithm, hash_state)
        if hasher is None:
            hasher = new_hash(algorithm)
            if size:
                async for chunk in self.storage.blobs.read_upload(upload_id, 0, size,
                                                                  scratch_state):
                    hasher.update(chunk)
        return _Resumed(algorithm, size, hasher, scratch_state)

    async def _complete_direct(self, repository: str, upload_id: str, expected: Digest,
                               body: AsyncIterator[bytes], chunk_range: ChunkRange | None,
                               content_length: int | None,
                               created: UploadRecord | None) -> int | None:
        """A final PUT that carries the whole blob (a monolithic push), on a store that
        prefers it: the bytes go straight to their content address, visible only once
        verified. None when the session already holds bytes: the usual path applies."""
        async with self._writer(repository, upload_id, created) as (_, record):
            if record.size != 0:
                return None
            expected_length = chunk_length(upload_id, 0, chunk_range, content_length)
            hasher = new_hash(expected.algorithm)
            # Pinned before any byte reaches the content address: garbage collection cannot
            # delete the blob between this write and the transaction that links it.
            await pin_upload_blob(self.storage, upload_id, str(expected))
            try:
                size = await self.storage.blobs.write_blob(
                    str(expected), hashed(body, hasher, expected_length),
                    lambda: hasher.hexdigest() == expected.hex, expected_length)
            except ChunkSizeMismatch:
                raise size_mismatch() from None
            except BlobUnverified:
                await self.storage.blobs.delete_upload(upload_id)
                await self.storage.write(self.storage.metadata.delete_upload, repository,
                                         upload_id)
                raise RegistryError(ErrorCode.DIGEST_INVALID,
                                    detail={"digest": str(expected)}) from None
            completed = await self.storage.write(self.storage.metadata.complete_upload,
                                                 repository, upload_id, str(expected), size)
        if not completed:
            raise unknown_upload(upload_id)
        return size

    async def _write_chunk(self, writer: UploadWriter, record: UploadRecord,
                           body: AsyncIterator[bytes], chunk_range: ChunkRange | None,
                           content_length: int | None, *, acknowledge: bool) -> int:
        """Write one chunk and (unless the caller will) acknowledge it in the database; all of
        it or nothing."""
        upload_id, size = record.id, record.size
        expected_length = chunk_length(upload_id, size, chunk_range, content_length)
        resumed = await self._resume(record, upload_id, record.algorithm)
        hasher = resumed.hasher
        writer.state = resumed.scratch_state
        try:
            new_size = await writer.write_at(size, hashed(body, hasher, expected_length),
                                             expected_length)
        except UploadOffsetMismatch as exc:
            raise range_error(upload_id, exc.current_size) from None
        except ChunkSizeMismatch:
            raise size_mismatch() from None
        after = _Resumed(record.algorithm, new_size, hasher, writer.state)
        if not acknowledge:
            self._hashers.put(upload_id, after)
            return new_size
        try:
            acknowledged = await self.storage.write(self._progress.acknowledge, upload_id, size,
                                                 new_size, hasher.export(), writer.state)
        except BaseException:
            await writer.truncate(size)
            raise
        if not acknowledged:
            await writer.truncate(size)
            current = await self.storage.read(self.storage.metadata.get_upload,
                                              record.repository, upload_id)
            if current is None:
                raise unknown_upload(upload_id)
            # Another node's concurrent write to this session was acknowledged first.
            raise range_error(upload_id, current.size, "another request wrote this upload")
        self._hashers.put(upload_id, after)
        return new_size
