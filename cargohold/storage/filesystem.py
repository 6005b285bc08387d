"""Blobs on a local filesystem: `blobs/<alg>/<2 hex>/<hex>` and `uploads/<id>`.

Writes land in the upload file, are verified by the caller, then renamed into place (atomic on
POSIX), with fsync of the data and the directory so a crash leaves the old or the new state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cargohold.storage.blob_commits import Commit, commit_files, fsync_dir
from cargohold.storage.blobstore import (
    BlobLocation,
    BlobMissing,
    BlobUnverified,
    RawOpener,
    UploadConflict,
    UploadMissing,
    UploadOffsetMismatch,
    valid_upload_id,
)
from cargohold.storage.direct_writes import STAGE, DirectWrites, write_staged
from cargohold.storage.thread_batches import ThreadBatches

READ_CHUNK = 1024 * 1024
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")


def _writeback_starter() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a range to disk without
    waiting. None where it is not available (then the final fsync does all the work)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # advisory: a failure changes nothing
    return start


SYNC_FILE_RANGE_WRITE = 2
# A large upload's bytes start going to disk every WRITEBACK_EVERY bytes while it streams in,
# so the fsync that publishes it finds little left to write (256 MiB: 190 ms → 12 ms here).
WRITEBACK_EVERY = 8 * 1024 * 1024
start_writeback = _writeback_starter() if sys.platform.startswith("linux") else None
BATCHED_COMMIT_BELOW = 1024 * 1024  # smaller blobs share their commit's thread hop


class FilesystemBlobStore:
    """A `BlobStore` rooted at one directory."""

    def __init__(self, root: Path, direct_writes: bool = True) -> None:
        self.root = Path(root)
        self.blob_root = self.root / "blobs"
        self.upload_root = self.root / "uploads"
        self._blob_dir, self._upload_dir = str(self.blob_root), str(self.upload_root)
        self._small_commits: ThreadBatches[Commit] = ThreadBatches(self._commit_files)
        self.direct_writes = DirectWrites(direct_writes)
        self.description = f"filesystem:{self.root}"
        self.blob_root.mkdir(parents=True, exist_ok=True)
        self.upload_root.mkdir(parents=True, exist_ok=True)
        self._make_prefix_directories()

    def _make_prefix_directories(self) -> None:
        """sha256's 256 prefix directories, made once: the first blob of each prefix then costs
        no mkdir and no fsync of its parents (a new registry's first pushes). A prefix that
        goes missing later is made again on demand (blob_commits.py)."""
        base = self.blob_root / "sha256"
        if (base / "ff").is_dir():  # made last
            return
        try:
            for prefix in range(256):
                (base / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)
            fsync_dir(base)
            fsync_dir(self.blob_root)
        except PermissionError:
            pass  # opened read-only (a command run by another user): nothing to write here

    # Paths are built only from validated digests and UUIDs: nothing from a request reaches the
    # filesystem unchecked. The request paths use the `str` forms: pathlib's joins cost ~10 µs
    # each here, several times per small blob.
    def blob_path(self, digest: str) -> Path:
        return Path(self._blob_file(digest))

    def upload_path(self, upload_id: str) -> Path:
        return Path(self._upload_file(upload_id))

    def _blob_file(self, digest: str) -> str:
        match = _DIGEST.match(digest)
        if not match:
            raise ValueError(f"invalid digest {digest!r}")
        algorithm, hexpart = match.groups()
        return f"{self._blob_dir}/{algorithm}/{hexpart[:2]}/{hexpart}"

    def _upload_file(self, upload_id: str) -> str:
        if not valid_upload_id(upload_id):
            upload_id = str(uuid.UUID(upload_id))  # ValueError unless it is a UUID at all
        return f"{self._upload_dir}/{upload_id}"

    async def check(self) -> None:
        probe = self.upload_root / f".health-{uuid.uuid4()}"
        probe.write_bytes(b"ok")
        probe.unlink()

    async def locate(self, digest: str, size: int | None = None) -> BlobLocation | None:
        path = self._blob_file(digest)  # a stat is cheap: `size` is not needed
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        return BlobLocation(path=path, size=size)

    async def read(self, digest: str, start: int = 0,
                   end: int | None = None) -> AsyncIterator[bytes]:
        try:
            handle = open(self._blob_file(digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        with handle:
            handle.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                chunk = handle.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._blob_file(digest))

    async def create_upload(self, upload_id: str) -> None:
        # On the loop: a hop to a thread cost more than the create (measured, bench/PROFILE.md).
        fd = os.open(self._upload_file(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)

    @contextlib.asynccontextmanager
    async def open_upload(self, upload_id: str) -> AsyncIterator[_FileUploadWriter]:
        path = self._upload_file(upload_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise UploadMissing(upload_id) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise UploadConflict(upload_id) from None
                raise
            yield _FileUploadWriter(fd, path, self.direct_writes)
        finally:
            os.close(fd)

    async def idle_uploads(self, idle_since: float) -> list[str]:
        idle = []
        for entry in os.scandir(self.upload_root):
            try:
                if entry.is_file() and entry.stat().st_mtime < idle_since:
                    idle.append(str(uuid.UUID(entry.name)))
            except (ValueError, FileNotFoundError):
                continue  # not an upload (a health probe), or already gone
        return idle

    async def list_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        for algorithm in ("sha256", "sha512"):
            base = self.blob_root / algorithm
            if not base.is_dir():
                continue
            for prefix in sorted(os.scandir(base), key=lambda e: e.name):
                if not prefix.is_dir():
                    continue
                for entry in os.scandir(prefix.path):
                    digest = f"{algorithm}:{entry.name}"
                    if not _DIGEST.match(digest):
                        continue
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    yield digest, stat.st_size, stat.st_mtime

    async def read_upload(self, upload_id: str, start: int, end: int,
                          state: str | None = None) -> AsyncIterator[bytes]:
        with open(self._upload_file(upload_id), "rb") as handle:
            handle.seek(start)
            remaining = end - start
            while remaining > 0 and (chunk := handle.read(min(READ_CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk

    async def commit_upload(self, upload_id: str, size: int, digest: str,
                            state: str | None = None) -> None:
        # fsync can take milliseconds: off the event loop. Small blobs share a thread hop with
        # the others committed meanwhile (thread_batches.py); a large one, whose fsync may
        # take a while, has a thread of its own and holds no small one up.
        commit = Commit(self._upload_file(upload_id), self._blob_file(digest), size)
        if size < BATCHED_COMMIT_BELOW:
            await self._small_commits.submit(commit)
            return
        (outcome,) = await asyncio.to_thread(self._commit_files, [commit])
        if outcome is not None:
            raise outcome

    def _commit_files(self, commits: list[Commit]) -> list[BaseException | None]:
        return commit_files(commits, self._blob_dir, start_writeback)

    async def delete_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._upload_file(upload_id))

    # Renaming a verified upload file into place costs nothing: no need for direct writes.
    prefers_direct_writes = False

    async def write_blob(self, digest: str, chunks: AsyncIterator[bytes],
                         verified: Callable[[], bool], length: int | None = None) -> int:
        upload_id = str(uuid.uuid4())
        await self.create_upload(upload_id)
        try:
            async with self.open_upload(upload_id) as writer:
                size = await writer.write_at(0, chunks)
            if not verified():
                raise BlobUnverified(digest)
            await self.commit_upload(upload_id, size, digest)
        except BaseException:
            await self.delete_upload(upload_id)
            raise
        return size

    def presign(self, digest: str, expires_seconds: int) -> str | None:
        return None  # served by the registry itself (its own signed download URLs)

    def raw_opener(self, digest: str) -> RawOpener | None:
        return None  # `locate` gives a path: served by sendfile


class _FileUploadWriter:
    """Writes to an upload file whose flock the caller holds."""

    def __init__(self, fd: int, path: str, direct: DirectWrites) -> None:
        self.fd = fd
        self.path = path
        self.direct = direct
        self.state: str | None = None  # the file is its own state

    async def write_at(self, offset: int, chunks: AsyncIterator[bytes],
                       length: int | None = None) -> int:
        size = os.fstat(self.fd).st_size
        if size < offset:
            raise UploadOffsetMismatch(size)
        if size > offset:
            os.ftruncate(self.fd, offset)
        buffers = self.direct.take() if length is None or length > STAGE else None
        if buffers is not None:
            try:
                return await write_staged(self.fd, self.path, offset, chunks, self.direct,
                                          buffers)
            except BaseException:
                os.ftruncate(self.fd, offset)
                raise
        os.lseek(self.fd, offset, os.SEEK_SET)
        written = flushed = offset
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    count = os.write(self.fd, view)
                    view = view[count:]
                    written += count
                if start_writeback is not None and written - flushed >= WRITEBACK_EVERY:
                    start_writeback(self.fd, flushed, written - flushed)
                    flushed = written
        except BaseException:
            os.ftruncate(self.fd, offset)
            raise
        return written

    async def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def untouched(self) -> bool:
        # A chunk is written before it is acknowledged, and cut back off unless it is: an
        # empty file is a session of size 0.
        return os.fstat(self.fd).st_size == 0
