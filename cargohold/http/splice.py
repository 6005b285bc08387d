"""Relayed blob bodies moved by the kernel: `os.splice` from the store's socket through a pipe
onto the client's socket, on a thread (the store's side: storage/s3_raw.py).

Why: relayed through aiohttp, every byte of a proxied S3 pull was received into Python and sent
on from there. Spliced, the pages go from one socket to the other without a copy into user
space, and without a Python call per chunk. Both sockets are non-blocking; the thread polls
whichever side it waits for, a slice at a time, so a cancelled request stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import threading
import time

from cargohold.http.sendfile import STALL_SECONDS, ClientGone, SocketSender
from cargohold.services.threads import WAIT_SLICE

PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size's default; a smaller pipe works too
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class SourceFailed(Exception):
    """The store's socket failed, stalled or ended early, after `taken` bytes of its body."""

    def __init__(self, taken: int, reason: str) -> None:
        super().__init__(reason)
        self.taken = taken


class SpliceRelay:
    """Moves bodies from store sockets onto one client socket (one thread's), in order."""

    def __init__(self, sock: int, cancelled: threading.Event, source_timeout: float) -> None:
        self.sock = sock
        self.cancelled = cancelled
        self.source_timeout = source_timeout
        self.sender = SocketSender(sock, cancelled)
        self._out, self._in = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # over the user's pipe quota: keep the default size
            fcntl.fcntl(self._in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.capacity = fcntl.fcntl(self._in, fcntl.F_GETPIPE_SZ)
        self.in_pipe = 0  # bytes taken from a source, not yet on the client's socket

    def close(self) -> None:
        os.close(self._in)
        os.close(self._out)

    def send_bytes(self, data: bytes) -> None:
        """Send bytes from memory, after whatever the pipe still holds."""
        self.pump(-1, 0)
        self.sender.send_bytes(data)

    def pump(self, source: int, count: int) -> None:
        """Move the next `count` bytes of `source` onto the client, and empty the pipe.

        SourceFailed when the source errs, ends early or sends nothing for `source_timeout`
        seconds (what it gave is in the pipe, delivered by the next call); ClientGone when the
        client closes, takes nothing for STALL_SECONDS, or the request is cancelled.
        """
        taken, poller = 0, select.poll()
        source_idle = client_idle = 0.0
        while taken < count or self.in_pipe:
            got = self._fill(source, count - taken, taken) if taken < count else 0
            taken += got
            sent = self._drain()
            if got:
                source_idle = 0.0
            if sent:
                client_idle = 0.0
            if got or sent:
                continue
            reading = taken < count and self.in_pipe < self.capacity
            waited = self._wait(poller, source if reading else -1)
            if self.in_pipe:
                client_idle += waited
            else:
                source_idle += waited
            if self.cancelled.is_set() or client_idle >= STALL_SECONDS:
                raise ClientGone
            if source_idle >= self.source_timeout:
                raise SourceFailed(taken, f"the store sent nothing for {self.source_timeout:g} s")

    def _fill(self, source: int, wanted: int, taken: int) -> int:
        """Take up to `wanted` bytes of the source into the pipe, as far as it has room."""
        room = self.capacity - self.in_pipe
        if room <= 0:
            return 0
        try:
            got = os.splice(source, self._in, min(wanted, room), flags=_FLAGS)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise SourceFailed(taken, str(exc)) from exc
        if got == 0:
            raise SourceFailed(taken, f"the store's body ended {wanted} bytes short")
        self.in_pipe += got
        return got

    def _drain(self) -> int:
        """Move what the pipe holds onto the client's socket, as far as it has room."""
        if not self.in_pipe:
            return 0
        try:
            sent = os.splice(self._out, self.sock, self.in_pipe, flags=_FLAGS)
        except BlockingIOError:
            return 0
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone from exc
        self.in_pipe -= sent
        return sent

    def _wait(self, poller: select.poll, source: int) -> float:
        """Wait, one slice at most, until the source can be read (when it is not -1) or the
        client's socket has room (when the pipe holds bytes); the seconds waited."""
        watched = []
        if source >= 0:
            watched.append((source, select.POLLIN))
        if self.in_pipe:
            watched.append((self.sock, select.POLLOUT))
        for fd, events in watched:
            poller.register(fd, events)
        began = time.monotonic()
        try:
            poller.poll(WAIT_SLICE * 1000)
        finally:
            for fd, _ in watched:
                poller.unregister(fd)
        return time.monotonic() - began
