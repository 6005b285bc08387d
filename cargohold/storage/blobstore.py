"""The blob-store interface: content-addressed bytes plus the scratch space of uploads.

Metadata (which repository may see which blob) lives in the metadata store; a blob store only
keeps bytes. Implementations: `FilesystemBlobStore` now, S3-compatible later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class UploadConflict(Exception):
    """Another request is writing to the same upload session right now."""


class UploadOffsetMismatch(Exception):
    """A chunk does not start where the upload currently ends."""

    def __init__(self, current_size: int) -> None:
        super().__init__(f"upload is at offset {current_size}")
        self.current_size = current_size


class UploadMissing(Exception):
    """The upload's scratch data does not exist."""


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """Where a blob's bytes can be served from: a local file (sendfile) or a stream."""

    path: Path | None
    size: int


class UploadWriter(Protocol):
    """The one writer of an upload session, while it holds the session."""

    async def write_at(self, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Write a chunk at `offset` (the acknowledged size) and return the new size.

        Bytes past `offset`, left by a chunk that was interrupted (even by a crash), are
        discarded first; a chunk that fails midway is cut back off: all of it or nothing.
        """

    async def truncate(self, size: int) -> None:
        """Cut the scratch data back to `size` bytes."""


class BlobStore(Protocol):
    """Bytes by digest, and append-only scratch files for upload sessions."""

    description: str

    async def check(self) -> None:
        """Raise when the store cannot be read and written."""

    async def locate(self, digest: str) -> BlobLocation | None:
        """Where the blob is, or None when its bytes are absent."""

    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a blob."""

    async def delete(self, digest: str) -> None:
        """Remove a blob's bytes (garbage collection only)."""

    async def create_upload(self, upload_id: str) -> None:
        """Create an empty scratch area for an upload session."""

    def open_upload(self, upload_id: str) -> AbstractAsyncContextManager[UploadWriter]:
        """Exclusive write access to an upload's scratch data.

        Raises UploadConflict when another request holds it, UploadMissing when it is gone.
        """

    def read_upload(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream the upload's bytes [start, end) (used to rebuild a digest)."""

    async def commit_upload(self, upload_id: str, size: int, digest: str) -> None:
        """Move the first `size` bytes of a verified upload into place as blob `digest`."""

    async def delete_upload(self, upload_id: str) -> None:
        """Discard an upload's scratch data."""

    async def idle_uploads(self, idle_since: float) -> list[str]:
        """Ids of scratch data untouched since `idle_since` (epoch seconds)."""

    def list_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every stored blob as (digest, size, last-modified epoch seconds), in any order.

        Used by fsck to find bytes no metadata accounts for (and garbage collection deletes
        with `delete`). Retention is the only caller; a store that cannot list raises
        NotImplementedError and fsck skips its orphan check.
        """
