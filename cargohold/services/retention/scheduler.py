"""The in-server retention jobs: garbage collection every `gc_interval`, lifecycle policies
every `lifecycle_interval`. Each worker runs the loops; the jobs' database
locks make sure only one process across all nodes works at a time."""

from __future__ import annotations

import asyncio
import contextlib

from cargohold.services.retention.gc import GarbageCollector
from cargohold.services.retention.lifecycle import LifecycleService
from cargohold.services.storage import Storage


def start_retention(storage: Storage) -> list[asyncio.Task[None]]:
    settings = storage.settings
    loop = asyncio.get_running_loop()
    return [
        loop.create_task(GarbageCollector(storage).run_periodically(
            settings.gc_interval, settings.gc_grace)),
        loop.create_task(LifecycleService(storage).run_periodically(settings.lifecycle_interval)),
    ]


async def stop_retention(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
