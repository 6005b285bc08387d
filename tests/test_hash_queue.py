"""A large body's digest on a thread beside the loop (services/hash_queue.py): batches hashed
in order whatever their sizes, the loop held back once AHEAD bytes wait, nothing left hashing
once an abandoned queue returns, and a failing hash raised to the request."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cargohold.services.hash_queue import AHEAD, HashQueue
from cargohold.services.resumable_hash import new_hash
from cargohold.services.upload_chunks import HASH_BATCH, ChunkSizeMismatch, hashed

TIMEOUT = 30


class GatedHash:
    """A sha256 whose updates wait for `gate`, and fail if two ever run at once."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.running = 0
        self.updates = 0

    def update(self, data: bytes) -> None:
        self.running += 1
        self.entered.set()
        try:
            assert self.running == 1, "two threads updated the hash at once"
            assert self.gate.wait(TIMEOUT)
            self.inner.update(data)
            self.updates += 1
        finally:
            self.running -= 1

    def hexdigest(self) -> str:
        return self.inner.hexdigest()

    def export(self) -> bytes | None:
        return None


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_batches_of_any_size_are_hashed_in_order() -> None:
    rng = random.Random(7)
    data = rng.randbytes(9 * HASH_BATCH + 4321)

    async def run() -> str:
        hasher = new_hash("sha256")
        queue = HashQueue(hasher)
        position = 0
        while position < len(data):
            pieces = []
            for _ in range(rng.randint(1, 5)):
                size = rng.randint(1, 700_000)
                pieces.append(data[position:position + size])
                position += size
            await queue.put(pieces)
        await queue.finish()
        return hasher.hexdigest()

    assert asyncio.run(run()) == hashlib.sha256(data).hexdigest()


def test_hashing_does_not_wait_for_the_default_executor() -> None:
    """The default executor's threads are the blob commits' and the staged writes': a large
    body's hashing has threads of its own, and goes on while those are all busy."""
    async def run() -> set[str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        gate = threading.Event()
        busy = loop.run_in_executor(None, gate.wait, TIMEOUT)
        names: set[str] = set()

        class Named:
            def update(self, data: bytes) -> None:
                names.add(threading.current_thread().name)

        try:
            queue = HashQueue(Named())  # type: ignore[arg-type]
            await queue.put([b"a" * 1000])
            await asyncio.wait_for(queue.finish(), TIMEOUT / 3)
        finally:
            gate.set()
            await busy
        return names

    (name,) = asyncio.run(run())
    assert name.startswith("hash")


def test_the_loop_waits_once_more_than_ahead_is_queued() -> None:
    async def run() -> None:
        hasher = GatedHash()
        queue = HashQueue(hasher)  # type: ignore[arg-type]
        batch = b"x" * (AHEAD // 2)
        for _ in range(2):  # the first is being hashed (held at the gate), the second waits
            await asyncio.wait_for(queue.put([batch]), TIMEOUT)
        assert await asyncio.to_thread(hasher.entered.wait, TIMEOUT)
        blocked = asyncio.ensure_future(queue.put([batch]))
        await settle()
        assert not blocked.done()  # 1.5 * AHEAD queued: the loop must wait
        hasher.gate.set()
        await asyncio.wait_for(blocked, TIMEOUT)
        await asyncio.wait_for(queue.finish(), TIMEOUT)
        assert hasher.updates == 3
        assert hasher.hexdigest() == hashlib.sha256(batch * 3).hexdigest()

    asyncio.run(run())


def test_an_abandoned_queue_leaves_no_thread_hashing() -> None:
    async def run() -> None:
        hasher = GatedHash()
        queue = HashQueue(hasher)  # type: ignore[arg-type]
        for _ in range(3):
            await queue.put([b"y" * 1000])
        assert await asyncio.to_thread(hasher.entered.wait, TIMEOUT)
        abandoning = asyncio.ensure_future(queue.abandon())
        await settle()
        assert not abandoning.done()  # the batch being hashed is waited for
        hasher.gate.set()
        await asyncio.wait_for(abandoning, TIMEOUT)
        assert hasher.running == 0
        assert hasher.updates == 1  # the batches not yet started were dropped

    asyncio.run(run())


def test_a_failing_hash_is_raised_by_finish() -> None:
    class Broken:
        def update(self, data: bytes) -> None:
            raise OSError("hash engine failed")

    async def run() -> None:
        queue = HashQueue(Broken())  # type: ignore[arg-type]
        await queue.put([b"z"])
        with pytest.raises(OSError, match="hash engine failed"):
            await asyncio.wait_for(queue.finish(), TIMEOUT)

    asyncio.run(run())


async def pieces(data: bytes, size: int):  # type: ignore[no-untyped-def]
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("length", [0, 1, HASH_BATCH - 1, HASH_BATCH, 5 * HASH_BATCH + 17])
def test_hashed_digests_what_it_passes_on(length: int) -> None:
    data = random.Random(length).randbytes(length)

    async def run() -> tuple[bytes, str]:
        hasher = new_hash("sha256")
        passed = [chunk async for chunk in hashed(pieces(data, 65_536), hasher, length)]
        return b"".join(passed), hasher.hexdigest()

    passed, digest = asyncio.run(run())
    assert passed == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_hashed_refuses_a_body_longer_than_declared_and_stops_hashing() -> None:
    data = b"w" * (4 * HASH_BATCH)

    async def run() -> None:
        hasher = GatedHash()
        hasher.gate.set()
        with pytest.raises(ChunkSizeMismatch):
            async for _ in hashed(pieces(data, 65_536), hasher,  # type: ignore[arg-type]
                                  3 * HASH_BATCH):
                pass
        assert hasher.running == 0

    asyncio.run(run())
