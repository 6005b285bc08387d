"""ThreadBatches: the jobs that arrive while a batch runs go together in the next one; each
caller gets its own item's outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cargohold.storage.thread_batches import Outcome, ThreadBatches


def test_jobs_arriving_during_a_batch_share_the_next_one() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[Outcome]:
        batches.append(items)
        if items == [0]:
            assert release.wait(10)  # the first batch is still running while the rest arrive
        return [None] * len(items)

    async def scenario() -> None:
        batcher = ThreadBatches(run)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 20)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert batches == [[0], list(range(1, 20))]


def test_jobs_submitted_in_one_round_of_the_loop_share_the_first_batch() -> None:
    """The first job of a quiet moment waits for the rest of its loop round: one hop for all
    the jobs that round submits, not one for the first and another for the rest."""
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[Outcome]:
        batches.append(items)
        return [None] * len(items)

    async def scenario() -> None:
        batcher = ThreadBatches(run)
        await asyncio.gather(*(batcher.submit(n) for n in range(5)))
        await batcher.submit(5)  # a later round: a batch of its own

    asyncio.run(scenario())
    assert batches == [[0, 1, 2, 3, 4], [5]]


def test_each_caller_gets_its_own_items_outcome() -> None:
    def run(items: list[int]) -> list[Outcome]:
        return [OSError(f"item {n} failed") if n % 3 == 0 else None for n in items]

    async def scenario() -> list[BaseException | None]:
        batcher = ThreadBatches(run)
        return await asyncio.gather(*(batcher.submit(n) for n in range(7)),
                                    return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert [str(o) if o else None for o in outcomes] == [
        "item 0 failed", None, None, "item 3 failed", None, None, "item 6 failed"]


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    runs: list[list[str]] = []

    def run(items: list[str]) -> list[Outcome]:
        runs.append(items)
        if "bad" in items:
            raise RuntimeError("the batch broke")
        return [None] * len(items)

    async def scenario() -> None:
        batcher = ThreadBatches(run)
        with pytest.raises(RuntimeError, match="the batch broke"):
            await batcher.submit("bad")
        await batcher.submit("good")

    asyncio.run(scenario())
    assert runs == [["bad"], ["good"]]
