"""The blob-store interface: content-addressed bytes plus the scratch space of uploads.

Metadata (which repository may see which blob) lives in the metadata store; a blob store only
keeps bytes. Implementations: `FilesystemBlobStore` (storage/filesystem.py) and `S3BlobStore`
(storage/s3.py). One contract test suite (tests/test_blobstore_contract.py) runs against both.

Upload scratch state: a backend may need a small, opaque description of an upload's scratch
data (S3: the list of staging objects). The writer exposes it as `UploadWriter.state` after a
write; the caller stores it in the database *in the same transaction* that acknowledges the new
size, and hands it back (`writer.state = …`, `read_upload(…, state)`, `commit_upload(…, state)`).
So any node can continue an upload, and bytes written by a write that was never acknowledged
(a crash, a lost race between two nodes) are simply not part of any acknowledged state. The
filesystem backend keeps its state in the file itself and leaves `state` as None.

Garbage collection and the upload purge use: `delete(digest)` for unreferenced blobs,
`idle_uploads(since)` + `delete_upload(id)` for abandoned scratch data (on S3 this also aborts
the upload's unfinished multipart uploads).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

# An upload id is a UUID in its canonical form (as `str(uuid.UUID(...))` writes it). A regular
# expression costs a fifth of parsing and re-formatting one, several times per upload request.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def valid_upload_id(upload_id: str) -> bool:
    return _CANONICAL_UUID.fullmatch(upload_id) is not None


class UploadConflict(Exception):
    """Another request is writing to the same upload session right now."""


class UploadOffsetMismatch(Exception):
    """A chunk does not start where the upload currently ends."""

    def __init__(self, current_size: int) -> None:
        super().__init__(f"upload is at offset {current_size}")
        self.current_size = current_size


class UploadMissing(Exception):
    """The upload's scratch data does not exist."""


class BlobMissing(Exception):
    """A blob's bytes are absent from the store (raised by `read` before its first byte)."""


class BlobUnverified(Exception):
    """`write_blob`'s bytes did not match the digest: nothing was stored."""


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """Where a blob's bytes can be served from: a local file (sendfile) or a stream."""

    path: str | None  # a str: a Path costs more to build than the stat that finds it
    size: int


class UploadWriter(Protocol):
    """The one writer of an upload session, while it holds the session."""

    async def write_at(self, offset: int, chunks: AsyncIterator[bytes],
                       length: int | None = None) -> int:
        """Write a chunk at `offset` (the acknowledged size) and return the new size.

        `length`, when the caller knows it (a request's Content-Length), is the number of bytes
        `chunks` carries, and the caller enforces it; S3 then streams the chunk on as it comes.

        Bytes past `offset`, left by a chunk that was interrupted (even by a crash), are
        discarded first; a chunk that fails midway is cut back off: all of it or nothing.
        """

    async def truncate(self, size: int) -> None:
        """Cut the scratch data back to `size` bytes."""

    def untouched(self) -> bool:
        """True only when the scratch data itself shows that no byte was ever kept, so the
        session is still as it was opened; False when only the database can tell."""

    # The backend's scratch state at the acknowledged size (see the module docstring): set by
    # the caller before `write_at`, updated by `write_at`. None for the filesystem backend.
    state: str | None


class RawBody(Protocol):
    """Blob bytes to be moved off a plain socket by the caller (a relay past Python): `head`
    came with the store's answer, the other `remaining` bytes are to be read from `fd`."""

    head: bytes
    fd: int
    remaining: int
    read_timeout: float  # seconds the store may send nothing before the read counts as failed

    def close(self) -> None: ...


# Opens bytes [start, stop) of one blob, blocking (a thread's); None when the store does not
# answer exactly those bytes, and the caller falls back to `read`.
RawOpener = Callable[[int, int], RawBody | None]


class BlobStore(Protocol):
    """Bytes by digest, and append-only scratch files for upload sessions."""

    description: str

    async def check(self) -> None:
        """Raise when the store cannot be read and written."""

    async def locate(self, digest: str, size: int | None = None) -> BlobLocation | None:
        """Where the blob is, or None when its bytes are absent.

        `size`, the size the metadata records, lets a remote store answer without asking the
        store (a round trip before every proxied pull); `read` then raises BlobMissing when
        the bytes turn out to be absent.
        """

    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a blob; BlobMissing before the first byte when absent."""

    async def delete(self, digest: str) -> None:
        """Remove a blob's bytes (garbage collection only)."""

    async def create_upload(self, upload_id: str) -> None:
        """Create an empty scratch area for an upload session."""

    def open_upload(self, upload_id: str) -> AbstractAsyncContextManager[UploadWriter]:
        """Exclusive write access to an upload's scratch data.

        Raises UploadConflict when another request holds it, UploadMissing when it is gone.
        """

    def read_upload(self, upload_id: str, start: int, end: int,
                    state: str | None = None) -> AsyncIterator[bytes]:
        """Stream the upload's bytes [start, end) (used to rebuild a digest)."""

    async def commit_upload(self, upload_id: str, size: int, digest: str,
                            state: str | None = None) -> None:
        """Move the first `size` bytes of a verified upload into place as blob `digest`.

        The blob becomes visible under its content address in one atomic step (rename,
        server-side copy, multipart completion): never a half-written blob.
        """

    async def delete_upload(self, upload_id: str) -> None:
        """Discard an upload's scratch data."""

    async def idle_uploads(self, idle_since: float) -> list[str]:
        """Ids of scratch data untouched since `idle_since` (epoch seconds)."""

    # A blob whose digest is known before its bytes arrive (a monolithic push) can go straight
    # to its content address, when the backend prefers that (S3: no staging copy).
    prefers_direct_writes: bool

    async def write_blob(self, digest: str, chunks: AsyncIterator[bytes],
                         verified: Callable[[], bool], length: int | None = None) -> int:
        """Stream a whole blob to its content address and return its size. `verified()` is
        asked after the last byte (the caller hashes them as they pass); the blob becomes
        visible only when it says True, else nothing is kept and BlobUnverified is raised."""

    def presign(self, digest: str, expires_seconds: int) -> str | None:
        """A URL that serves the blob without credentials for a while, or None when this
        backend cannot make one (the filesystem)."""

    def raw_opener(self, digest: str) -> RawOpener | None:
        """How to open the blob's bytes on a plain socket, or None when they must go through
        `read` (or are a local file)."""

    def list_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every stored blob as (digest, size, last-modified epoch seconds), in any order.

        Used by fsck to find bytes no metadata accounts for (and garbage collection deletes
        with `delete`). Retention is the only caller; a store that cannot list raises
        NotImplementedError and fsck skips its orphan check.
        """
