"""The upload side of garbage collection: pin a blob before publishing its bytes."""

from __future__ import annotations

import asyncio
import time

from cargohold.services.storage import Storage
from cargohold.storage.collection import CollectionStore
from cargohold.wire.errors import ErrorCode, RegistryError

PIN_WAIT_SECONDS = 30.0


async def pin_upload_blob(storage: Storage, upload_id: str, digest: str) -> None:
    """Keep garbage collection off `digest` until the upload links it (or is dropped).

    Called after the digest is verified and before the bytes are moved into place, so the
    bytes an upload finds already in place (and skips writing) cannot be collected before its
    own transaction links them. When a collection is deleting an older copy right now, wait for
    it to finish, then publish fresh bytes.
    """
    store = CollectionStore(storage.database)
    deadline = time.monotonic() + PIN_WAIT_SECONDS
    while not await storage.write(store.pin_blob, upload_id, digest):
        if time.monotonic() > deadline:
            raise RegistryError(ErrorCode.UNAVAILABLE,
                                "garbage collection is removing an older copy of this blob; "
                                "retry the request", {"digest": digest},
                                headers={"Retry-After": "5"})
        await asyncio.sleep(0.05)


async def pinned_digest(storage: Storage, upload_id: str) -> str | None:
    """The digest an upload pinned: the one its bytes verified as, before they were moved."""
    return await storage.read(CollectionStore(storage.database).pinned_digest, upload_id)
