"""Serving blob bytes: zero-copy `sendfile` from local files, with single-range requests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from cargohold.oci.errors import ErrorCode, RegistryError


def requested_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The [start, end) byte range asked for, None for the whole blob.

    A malformed or multi-range header is ignored (RFC 9110 lets a server do so); a range that
    lies wholly beyond the blob is refused with 416.
    """
    if "Range" not in request.headers:
        return None
    try:
        wanted = request.http_range
    except ValueError:
        return None
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return None
    if start is None:
        # "bytes=-N" arrives as slice(-N, None) in aiohttp; tolerate both encodings.
        start, stop = max(size - (stop or 0), 0), size
    elif start < 0:
        start, stop = max(size + start, 0), size
    stop = size if stop is None else min(stop, size)
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
