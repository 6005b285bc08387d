"""Spreads the connections of the shared listening socket evenly over the worker processes.

Why: every worker waits on the one listening socket, and the first to wake takes all the
connections queued at that moment. Clients that open their pool at once (16 connections
pushing small blobs, wrk's 64) were split 12 to 5 between two workers, so one worker's core
was the limit while the other idled (bench/PROFILE.md, session 7). Each worker publishes how
many connections it holds in memory shared across the fork; a worker holding more than
`SLACK` above the least loaded one steps back for `DEFER` seconds, which gives the others the
first chance; a connection still queued after `MAX_DEFERRALS` of those it takes anyway, so no
connection waits long on a busy worker. A step back ends as soon as its reason has gone:
a worker whose own connections close (the pool before a new one, still closing; one-request
connections) resumes at once.

Earlier versions let nobody step back for a worker that was stepping back itself, so that
two workers would not both wait. But a step back outlived its reason: a worker still
closing its previous pool stepped back for the whole 2 ms while the other took every
connection (7 in a row), and pools of 32 split 14 to 18 (bench/PROFILE.md, session 12).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import select
import socket
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray
from typing import Any

from aiohttp import web
from aiohttp.web_runner import BaseSite

DEFER = 0.002  # seconds a worker above its share leaves a waiting connection to the others
SLACK = 1  # connections a worker may hold above the least loaded before it steps back
MAX_DEFERRALS = 3  # steps back in a row while connections stay queued, then it accepts
RESOURCE_PAUSE = 1.0  # out of descriptors or memory: accepting resumes after this (as asyncio)
ACCEPT_BATCH = 16  # connections taken per wake-up at most, so requests in flight keep moving
NOT_ACCEPTING = 2**31 - 1  # the count of a worker that is starting, stopping or dead
log = logging.getLogger(__name__)


class ConnectionCounts:
    """Connections each worker holds, one slot per worker, shared by every forked process.
    A slot is written by its own worker only while that worker lives, by the supervisor
    once it has died; the others merely read it."""

    def __init__(self, workers: int) -> None:
        self._slots: Any = RawArray(ctypes.c_int, [NOT_ACCEPTING] * workers)

    def stopped(self, index: int) -> None:
        """Worker `index` accepts no more: the others no longer leave connections to it."""
        self._slots[index] = NOT_ACCEPTING

    def set(self, index: int, count: int) -> None:
        self._slots[index] = count

    def get(self, index: int) -> int:
        return int(self._slots[index])

    def above_share(self, index: int) -> bool:
        """True when another worker holds more than `SLACK` fewer connections than worker
        `index`."""
        own = self._slots[index]
        return any(count + SLACK < own for count in self._slots)


class WorkerSlot:
    """This worker's slot: connections being accepted plus those its server holds.
    `on_fall`, when set, is called whenever the count falls: a connection closed, or one
    accepted left `opening` (its server counted it in `open` a moment before)."""

    def __init__(self, counts: ConnectionCounts, index: int) -> None:
        self.counts = counts
        self.index = index
        self.opening = 0
        self.open = 0
        self.accepting = False
        self.on_fall: Callable[[], None] | None = None

    def start(self) -> None:
        self.accepting = True
        self.counts.set(self.index, self.opening + self.open)

    def stop(self) -> None:
        self.accepting = False
        self.counts.stopped(self.index)

    def changed(self, opening: int = 0, open: int = 0) -> None:
        self.opening += opening
        self.open += open
        if self.accepting:
            self.counts.set(self.index, self.opening + self.open)
            if opening + open < 0 and self.on_fall is not None:
                self.on_fall()

    def above_share(self) -> bool:
        return self.counts.above_share(self.index)


class BalancedSockSite(BaseSite):
    """aiohttp's `SockSite` for a socket shared with other workers: accepts with the balance
    above, then hands each connection to the runner's server as the loop would."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, slot: WorkerSlot) -> None:
        super().__init__(runner)
        self._sock = sock
        self._slot = slot
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._resume: asyncio.TimerHandle | None = None
        self._deferrals = 0  # steps back in a row with connections queued all along
        self._connecting: set[asyncio.Task[None]] = set()
        host, port = sock.getsockname()[:2]
        self._name = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._slot.on_fall = self._count_fell
        self._slot.start()
        self._read(True)

    async def stop(self) -> None:
        self._read(False)
        self._slot.stop()
        if self._resume is not None:
            self._resume.cancel()
        self._runner._check_site(self)
        self._runner._unreg_site(self)

    def _read(self, on: bool) -> None:
        assert self._loop is not None
        if on and not self._reading:
            self._loop.add_reader(self._sock.fileno(), self._readable)
        elif not on and self._reading:
            self._loop.remove_reader(self._sock.fileno())
        self._reading = on

    def _pause(self, seconds: float) -> None:
        assert self._loop is not None
        self._read(False)
        self._resume = self._loop.call_later(seconds, self._resumed)

    def _count_fell(self) -> None:
        """A step back ends early once this worker no longer holds more than its share (a
        pause for want of descriptors, which resets `_deferrals`, runs its course)."""
        if self._resume is not None and self._deferrals and not self._slot.above_share():
            self._resume.cancel()
            self._resumed()

    def _resumed(self) -> None:
        self._resume = None
        self._read(True)
        if queued(self._sock):
            self._readable()  # it waited for the others, or another came: step back again?
        else:
            self._deferrals = 0  # the others took what was waiting

    def _readable(self) -> None:
        if self._deferrals < MAX_DEFERRALS and self._slot.above_share():
            self._deferrals += 1
            self._pause(DEFER)
        else:
            self._deferrals = 0
            self._accept()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accepting a connection failed (%s); pausing %.0f s", error,
                              RESOURCE_PAUSE)
                    self._pause(RESOURCE_PAUSE)
                return  # ECONNABORTED and the like: that client is gone
            self._slot.changed(opening=1)
            task = asyncio.ensure_future(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            if self._slot.above_share():
                return  # the next one waits for the others first

    async def _connect(self, conn: socket.socket) -> None:
        assert self._loop is not None and self._runner.server is not None
        try:
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._loop.connect_accepted_socket(self._runner.server, conn)
        except OSError as error:
            log.info("a connection was lost as it was accepted: %s", error)
            conn.close()
        finally:
            self._slot.changed(opening=-1)


def queued(sock: socket.socket) -> bool:
    """Whether a connection waits to be accepted on listening socket `sock`."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))
