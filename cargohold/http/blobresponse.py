"""Serving blob bytes: zero-copy `sendfile` from local files (`sendfile.py`), or a stream from
a remote store, with single-range requests."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from cargohold.http.sendfile import SENT_KEY, ClientGone, SocketSender, raw_socket
from cargohold.services.threads import in_thread
from cargohold.wire.errors import ErrorCode, RegistryError

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


async def send_file(request: web.Request, path: Path, size: int,
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


def _small_body(streamed: web.StreamResponse, path: Path, start: int,
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
                      size: int, headers: dict[str, str]) -> web.StreamResponse:
    """Answer with a blob streamed from a remote store (S3), honouring a single Range:
    `chunks(start, stop)` yields those bytes (the store bounds what it holds).

    The first chunk is awaited before the status line is sent, so a store that finds the
    bytes absent (BlobMissing) still gets a proper error answer. The stream is closed when the
    client goes away, which stops the store's requests at once.
    """
    response, start, stop = ranged_response(request, size, headers)
    if request.method == "HEAD" or stop <= start:
        await response.prepare(request)
        await response.write_eof()
        return response
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
