"""A client for one or more OCI Distribution registries on top of :class:`Transport`.

``Registry`` joins the operation groups: manifests (``manifests.py``), tags, catalog and referrers
(``listing.py``) and blobs (``blobs.py``); the data types are in ``content.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cargohold.client.blobs import BlobOperations
from cargohold.client.listing import ListingOperations


class Registry(ListingOperations, BlobOperations):
    """Everything the commands do with registries: manifests, listings, blobs."""


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
