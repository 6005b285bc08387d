"""One thread hop for many small blocking jobs.

Why: under load, handing each small job (a blob's fsync, rename and directory fsync) to a thread
of its own costs more than the job: the hand-over, the wake-up, and a thread that needs the GIL
back after every system call while the event loop holds it (measured: ~0.35 ms of CPU per
small blob pushed, bench/PROFILE.md). Here the jobs that arrive while one batch runs wait for
the next, which takes them all in one hop. The first of a quiet moment goes at the end of the
event loop's current round, with every job the other requests of that round submit (a hop
costs 35-95 µs of CPU on a two-vCPU VM; waiting for the round cost none measurably).
`settle` and `deliver` hand a thread's outcomes back to the futures awaiting them (the group
commit and the upstream threads use them too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
T = TypeVar("T")
Outcome = BaseException | None


class ThreadBatches(Generic[Item]):
    """Runs `run(items)` on the loop's default executor, one batch at a time, over every item
    submitted meanwhile. `run` returns one outcome per item, in order: None when it was done,
    else the exception its caller gets. If `run` itself raises, every caller of that batch
    gets the exception."""

    def __init__(self, run: Callable[[list[Item]], list[Outcome]]) -> None:
        self._run = run
        self._waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self._running = False
        self._soon = False  # a start is scheduled for the end of the loop's round

    async def submit(self, item: Item) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((item, future))
        if not self._running and not self._soon:
            self._soon = True
            loop.call_soon(self._start_soon, loop)
        # A caller that goes away leaves its item in the batch, as a thread of its own would
        # have finished it.
        await future

    def _start_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._soon = False
        if not self._running and self._waiting:
            self._start(loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        self._running = True
        job = loop.run_in_executor(None, self._run, [item for item, _ in batch])

        def finished(done: asyncio.Future[Any]) -> None:
            self._running = False
            error = done.exception()
            deliver([future for _, future in batch],
                    [error] * len(batch) if error is not None else done.result())
            if self._waiting:
                self._start(loop)

        job.add_done_callback(finished)


def settle(future: asyncio.Future[T], value: T | None, error: BaseException | None) -> None:
    """Give a future its value, or its error, unless it is done already (its caller gone)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


def deliver(futures: list[asyncio.Future[Any]], outcomes: list[Any]) -> None:
    """Each future its outcome: an exception is raised to its caller, anything else returned."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            settle(future, None, outcome)
        else:
            settle(future, outcome, None)
