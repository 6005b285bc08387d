"""Serving blob bytes: zero-copy `sendfile` from local files, or a stream from a remote store,
with single-range requests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from cargohold.wire.errors import ErrorCode, RegistryError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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


async def send_file(request: web.Request, path: Path, size: int,
                    headers: dict[str, str]) -> web.StreamResponse:
    """Answer with the file's bytes (or the requested range) via sendfile."""
    span = requested_range(request, size)
    start, stop = span if span is not None else (0, size)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if span is not None:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response.content_length = stop - start
    with open(path, "rb") as handle:
        writer = await response.prepare(request)
        if request.method != "HEAD" and stop > start:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            assert writer is not None
            await writer.drain()
            loop = asyncio.get_running_loop()
            try:
                await loop.sendfile(transport, handle, start, stop - start)
            except NotImplementedError:
                await _copy(response, handle, start, stop)
    await response.write_eof()
    return response


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
    span = requested_range(request, size)
    start, stop = span if span is not None else (0, size)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if span is not None:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response.content_length = stop - start
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
