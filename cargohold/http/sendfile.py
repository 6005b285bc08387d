"""Zero-copy blob bodies: `os.sendfile` from a file onto the client's socket, on a thread.

Why: uvloop has no `loop.sendfile` (asyncio's falls back to reads on the default executor), so
a blob body went through Python: a `pread` into a new bytes object, then a copy into the
socket. Here the kernel moves the page-cache pages itself. The response's headers are first
handed to the kernel by aiohttp; then a thread owns a duplicate of the socket (non-blocking,
like the original: it polls for room) until the body is out, and the event loop only ends the
response. TLS connections, and a transport that still buffers bytes, keep the copying path.
"""

from __future__ import annotations

import os
import select
import threading

from aiohttp import web

from cargohold.services.threads import WAIT_SLICE

# Bytes a response sent by sendfile, which aiohttp's writer doesn't see (the access log adds it).
SENT_KEY = "cargohold.sendfile_bytes"
STALL_SECONDS = 60.0  # a client that takes no bytes this long is given up


class ClientGone(Exception):
    """The client closed its connection or stopped reading."""


def plain_tcp(request: web.Request) -> bool:
    """Whether the client's connection is not TLS: its bytes may be moved by the kernel."""
    transport = request.transport
    return transport is not None and transport.get_extra_info("sslcontext") is None \
        and transport.get_extra_info("ssl_object") is None


def raw_socket(request: web.Request) -> int | None:
    """A duplicate of the client's socket when bytes may be sendfile'd onto it: plain TCP, the
    response's headers already handed to the kernel. None otherwise."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientGone
    if not plain_tcp(request):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_write_buffer_size() != 0:
        return None
    return os.dup(sock.fileno())


class SocketSender:
    """Sends file ranges onto a duplicated, non-blocking client socket (one thread's)."""

    def __init__(self, sock: int, cancelled: threading.Event) -> None:
        self.sock = sock
        self.cancelled = cancelled
        self._poller = select.poll()
        self._poller.register(sock, select.POLLOUT)

    def send(self, reader: int, offset: int, stop: int) -> None:
        """Send bytes [offset, stop) of the file `reader`."""
        while offset < stop:
            try:
                sent = os.sendfile(self.sock, reader, offset, stop - offset)
            except BlockingIOError:
                self._await_room()
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ClientGone from exc
            if sent == 0:
                raise ConnectionAbortedError(f"the file ended at {offset} bytes")
            offset += sent

    def send_bytes(self, data: bytes) -> None:
        """Send bytes from memory."""
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.sock, view)
            except BlockingIOError:
                self._await_room()
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ClientGone from exc
            view = view[sent:]

    def _await_room(self) -> None:
        waited = 0.0
        while not self._poller.poll(WAIT_SLICE * 1000):
            waited += WAIT_SLICE
            if self.cancelled.is_set() or waited >= STALL_SECONDS:
                raise ClientGone
