"""SQLite's one writer at a time, queued in the kernel instead of in SQLite's busy handler.

Why: SQLite lets one connection write at a time. A connection that finds the database locked
by another process waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 … ms
between polls, while a write transaction here holds the lock for tens of microseconds. With
two worker processes (the default on two CPUs) those sleeps made a convoy: tag PUTs ran at
0.73 ms of CPU and 990/s with one worker, but 1.1 ms and 730/s with two (bench/PROFILE.md).
So every writer of the database file, in any process, first takes an exclusive `flock` on a
file beside it: a waiter blocks in the kernel and wakes the moment the holder lets go, and
by the time it runs `BEGIN IMMEDIATE` nobody else writes. Threads of one process queue on a
`threading.Lock` before that, since `flock` does not exclude threads sharing a descriptor.
"""

from __future__ import annotations

import fcntl
import os
import threading

from sqlalchemy.engine import make_url


def sqlite_path(url: str) -> str | None:
    """The SQLite database's file; None for a private in-memory database (one process:
    nobody to exclude)."""
    name = make_url(url).database
    return None if not name or name == ":memory:" else name


class WriterLock:
    """This process's threads, then every process, one writer at a time."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        self._path = None if path is None else path + "-writer.lock"
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int | None:
        # A descriptor opened before fork() is shared with the child, and so is its flock:
        # each process opens its own.
        if self._path is None:
            return None
        if self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self, blocking: bool = True) -> bool:
        if not self._threads.acquire(blocking):
            return False
        try:
            fd = self._descriptor()
            if fd is not None:
                if blocking:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        self._threads.release()
                        return False
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        try:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
