"""Serving a blob from its upload file while the upstream transfer fills it (`Filling`).

Over plain TCP with a known size the bytes go by sendfile on a thread of its own (uvloop has no
`loop.sendfile`, and the socket is non-blocking: the thread polls it for room), never past what
the transfer allows; the event loop only starts and ends the response. TLS connections and
bodies of unannounced size take the loop: pread a piece, write it. Either way a failed transfer
ends the response short (the connection is aborted), and a client that goes away only stops
its own response: the transfer goes on and stores the blob.
"""

from __future__ import annotations

import logging
import os
import threading

from aiohttp import web

from cargohold.http.blobresponse import ranged_response
from cargohold.http.sendfile import SENT_KEY, ClientGone, SocketSender, raw_socket
from cargohold.services.threads import in_thread
from cargohold.services.upstream.filling import Cancelled, Filling

log = logging.getLogger(__name__)
PIECE = 1 << 20  # the loop's pread size


async def send_filling(request: web.Request, filling: Filling, reader: int,
                       headers: dict[str, str]) -> web.StreamResponse:
    """Answer a blob GET from a filling upload file; `reader` (a descriptor of that file) is
    this function's to close. A single Range is honoured when the upstream announced the size."""
    owned: int | None = reader
    try:
        start: int = 0
        stop: int | None = None
        if filling.size is None:  # unannounced: the whole body, as long as it turns out
            response = web.StreamResponse(status=200, headers=headers)
        else:
            response, start, stop = ranged_response(request, filling.size, headers)
        await response.prepare(request)
        try:
            sock = raw_socket(request) if stop is not None and stop > start else None
            if sock is not None:
                owned = None  # the thread closes both descriptors
                cancelled = threading.Event()
                assert stop is not None
                await in_thread(lambda: _sendfile(sock, reader, start, stop, filling, cancelled),
                                "blob-sendfile", cancelled.set)
                request[SENT_KEY] = stop - start
            else:
                await _copy(response, reader, start, stop, filling)
        except ClientGone:
            return response
        except Exception as exc:
            # Headers are out: cut the connection so the client sees an incomplete body.
            log.warning("pull-through of %s failed mid-transfer: %s", request.path, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    finally:
        if owned is not None:
            os.close(owned)


def _sendfile(sock: int, reader: int, start: int, stop: int, filling: Filling,
              cancelled: threading.Event) -> None:
    """Send [start, stop) of the file as the transfer allows (a thread; closes both)."""
    try:
        sender = SocketSender(sock, cancelled)
        offset = start
        while offset < stop:
            try:
                limit = filling.wait(offset, stop, cancelled)
            except Cancelled:
                raise ClientGone from None
            if limit <= offset:
                raise ConnectionAbortedError(f"the blob ended at {offset} of {stop} bytes")
            sender.send(reader, offset, limit)
            offset = limit
    finally:
        os.close(sock)
        os.close(reader)


async def _copy(response: web.StreamResponse, reader: int, start: int, stop: int | None,
                filling: Filling) -> None:
    offset = start
    while stop is None or offset < stop:
        limit = await filling.wait_async(offset, stop)
        if limit <= offset:
            if stop is None:
                return  # the verified end of a body of unannounced size
            raise ConnectionAbortedError(f"the blob ended at {offset} of {stop} bytes")
        while offset < limit:
            chunk = os.pread(reader, min(PIECE, limit - offset), offset)  # the page cache
            if not chunk:
                raise ConnectionAbortedError(f"the upload file ended at {offset} bytes")
            try:
                await response.write(chunk)
            except (ConnectionError, RuntimeError) as exc:
                raise ClientGone from exc
            offset += len(chunk)

