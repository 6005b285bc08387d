"""Serving blob bytes, with single-range requests: zero-copy `sendfile` from local files
(`sendfile.py`), a remote store's socket spliced onto the client's (`splice.py`), or a stream
from a remote store."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from cargohold.http.sendfile import SENT_KEY, ClientGone, SocketSender, plain_tcp, raw_socket
from cargohold.http.splice import SourceFailed, SpliceRelay
from cargohold.services.threads import in_thread
from cargohold.storage.blobstore import RawBody, RawOpener
from cargohold.wire.errors import ErrorCode, RegistryError

log = logging.getLogger(__name__)
RESUMES = 3  # store connections lost midway that a relay opens again (as S3Transfer's reads)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Below this a body is read and written on the loop: cheaper than a thread of its own.
SENDFILE_MIN = 1 << 20


def requested_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The [start, end) byte range asked for, None for the whole blob.

    Only single ranges are honoured (a multi-range or foreign-unit header is ignored, as RFC 9110
    allows); a range that is backwards or lies wholly beyond the blob is refused with 416, as
    the OCI conformance suite expects.
    """
    header = request.headers.get("Range")
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start, stop = max(size - int(last), 0), size
    else:
        start = int(first)
        stop = size if last == "" else min(int(last) + 1, size)
        if last != "" and int(last) < start:
            stop = start
    if start >= size or start >= stop:
        raise RegistryError(ErrorCode.RANGE_INVALID, "requested range not satisfiable",
                            {"size": size}, headers={"Content-Range": f"bytes */{size}"})
    return start, stop


def ranged_response(request: web.Request, size: int,
                    headers: dict[str, str]) -> tuple[web.StreamResponse, int, int]:
    """The response to a GET or HEAD of `size` bytes, honouring a single Range, and the
    [start, stop) it answers with."""
    span = requested_range(request, size)
    start, stop = span if span is not None else (0, size)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if span is not None:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response.content_length = stop - start
    return response, start, stop


async def send_file(request: web.Request, path: str, size: int,
                    headers: dict[str, str]) -> web.StreamResponse:
    """Answer with the file's bytes (or the requested range): by sendfile on a thread for a
    large body over plain TCP (`sendfile.py`), else read and written on the loop."""
    response, start, stop = ranged_response(request, size, headers)
    if request.method == "GET" and stop - start < SENDFILE_MIN:
        return _small_body(response, path, start, stop)
    with open(path, "rb") as handle:
        await response.prepare(request)
        if request.method != "HEAD" and stop > start:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            sock = raw_socket(request)  # small GETs left above: this body is large
            if sock is None:
                await _copy(response, handle, start, stop)
            else:
                reader, cancelled = os.dup(handle.fileno()), threading.Event()
                try:
                    await in_thread(lambda: _send(sock, reader, start, stop, cancelled),
                                    "blob-sendfile", cancelled.set)
                except (ClientGone, OSError):
                    transport.abort()  # the body is short: the client must see it cut
                    return response
                request[SENT_KEY] = stop - start
    await response.write_eof()
    return response


def _small_body(streamed: web.StreamResponse, path: str, start: int,
                stop: int) -> web.Response:
    """A small body read whole (one page-cache read) and answered as a plain Response, whose
    headers and body leave in one send."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        body = os.pread(fd, stop - start, start)
    finally:
        os.close(fd)
    if len(body) != stop - start:
        raise ConnectionAbortedError(f"{path} ended at {start + len(body)} of {stop} bytes")
    return web.Response(status=streamed.status, headers=streamed.headers, body=body)


def _send(sock: int, reader: int, start: int, stop: int, cancelled: threading.Event) -> None:
    try:
        SocketSender(sock, cancelled).send(reader, start, stop)
    finally:
        os.close(sock)
        os.close(reader)


async def _copy(response: web.StreamResponse, handle: object, start: int, stop: int) -> None:
    fd = handle.fileno()  # type: ignore[attr-defined]
    position = start
    while position < stop:
        chunk = os.pread(fd, min(1 << 20, stop - position), position)
        if not chunk:
            break
        await response.write(chunk)
        position += len(chunk)


async def send_stream(request: web.Request, chunks: Callable[[int, int], AsyncIterator[bytes]],
                      size: int, headers: dict[str, str],
                      opener: RawOpener | None = None) -> web.StreamResponse:
    """Answer with a blob streamed from a remote store (S3), honouring a single Range:
    `chunks(start, stop)` yields those bytes (the store bounds what it holds). A large body
    that `opener` can open on a plain socket is spliced onto a plain-TCP client instead
    (`splice.py`).

    The first chunk is awaited before the status line is sent, so a store that finds the
    bytes absent (BlobMissing) still gets a proper error answer. The stream is closed when the
    client goes away, which stops the store's requests at once.
    """
    response, start, stop = ranged_response(request, size, headers)
    if request.method == "HEAD" or stop <= start:
        await response.prepare(request)
        await response.write_eof()
        return response
    if opener is not None and stop - start >= SENDFILE_MIN and plain_tcp(request):
        body = await in_thread(lambda: opener(start, stop), "blob-open")
        if body is not None:
            return await _send_spliced(request, response, body, opener, (start, stop), chunks)
    stream = chunks(start, stop)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        first = await anext(stream, b"")
        await response.prepare(request)
        if first:
            await response.write(first)
        async for chunk in stream:
            await response.write(chunk)
    await response.write_eof()
    return response


async def _send_spliced(request: web.Request, response: web.StreamResponse, body: RawBody,
                        opener: RawOpener, span: tuple[int, int],
                        chunks: Callable[[int, int], AsyncIterator[bytes]]
                        ) -> web.StreamResponse:
    try:
        await response.prepare(request)
        sock = raw_socket(request)
    except ClientGone:
        body.close()
        raise ConnectionResetError("client went away") from None
    except BaseException:
        body.close()
        raise
    if sock is None:  # the transport still holds bytes: this body goes through Python
        body.close()
        stream = chunks(*span)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                await response.write(chunk)
    else:
        transport, cancelled = request.transport, threading.Event()
        try:
            await in_thread(lambda: _relay(sock, body, opener, span, cancelled),
                            "blob-splice", cancelled.set)
        except (ClientGone, SourceFailed, OSError) as exc:
            if isinstance(exc, SourceFailed):
                log.warning("relaying blob bytes from the store failed: %s", exc)
            if transport is not None:
                transport.abort()  # the body is short: the client must see it cut
            return response
        request[SENT_KEY] = span[1] - span[0]
    await response.write_eof()
    return response


def _relay(sock: int, opened: RawBody, opener: RawOpener, span: tuple[int, int],
           cancelled: threading.Event) -> None:
    """Splice bytes span of the blob onto the client, from `opened` on; a store connection
    that fails midway is opened again from where it stopped, up to RESUMES times."""
    relay = SpliceRelay(sock, cancelled, opened.read_timeout)
    body: RawBody | None = opened
    position, stop = span
    try:
        for attempt in range(RESUMES + 1):
            if body is None:
                raise SourceFailed(0, f"the store did not answer a read from byte {position}")
            try:
                relay.send_bytes(body.head)
                position += len(body.head)
                relay.pump(body.fd, body.remaining)
                return
            except SourceFailed as exc:
                position += exc.taken
                if attempt == RESUMES:
                    raise
                log.warning("relaying blob bytes from the store: %s; resuming at byte %d",
                            exc, position)
            body.close()
            body = opener(position, stop)
    finally:
        if body is not None:
            body.close()
        relay.close()
        os.close(sock)
