"""Blob pulls and deletes. Upload sessions are in uploads.py (re-exported here, where their
callers have always imported them)."""

from __future__ import annotations

import logging

from cargohold.services.storage import Storage
from cargohold.services.upload_chunks import ChunkRange, UploadState
from cargohold.services.uploads import UploadService
from cargohold.storage.blobstore import BlobLocation
from cargohold.wire.digest import Digest, parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError

__all__ = ["BlobService", "ChunkRange", "UploadService", "UploadState"]
log = logging.getLogger(__name__)


class BlobService:
    """Which blobs a repository may serve, and where their bytes are."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def locate(self, repository: str, digest: str,
                     check: bool = True) -> tuple[Digest, BlobLocation]:
        """The blob's digest and location. `check=False` (a pull that reads the bytes next)
        lets a remote store trust the recorded size: the read itself raises BlobMissing,
        which `missing` turns into the same answer."""
        parsed = parse_digest(digest)
        size = await self.storage.read(self.storage.metadata.blob_size, repository, str(parsed))
        if size is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(parsed)})
        location = await self.storage.blobs.locate(str(parsed), None if check else size)
        if location is None:
            raise self.missing(parsed)
        return parsed, location

    @staticmethod
    def missing(digest: Digest) -> RegistryError:
        log.error("blob %s is recorded but its bytes are missing", digest)
        return RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})

    async def delete(self, repository: str, digest: str) -> None:
        """Unlink a blob from a repository; garbage collection removes bytes nobody links."""
        parsed = parse_digest(digest)
        if not await self.storage.db(self.storage.metadata.unlink_blob, repository, str(parsed)):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(parsed)})
