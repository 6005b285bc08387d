"""Raw S3 object bodies: a GetObject on a blocking connection whose body the caller takes from
the socket itself, for a relay that never copies the bytes through Python (`http/splice.py`).

Why: a proxied pull through aiohttp receives every byte into a Python buffer and sends it on
from there, about 0.7 s of a worker's CPU per GiB on loopback, CPU that the store and the client
share on a small machine. When the body can be read straight off a plain TCP socket, the
kernel can move it from the store's socket onto the client's (splice).

Only a plain-HTTP endpoint reached without a proxy qualifies: TLS bytes must be decrypted in
user space, and a proxy is aiohttp's business. Everything else keeps `S3Transfer.get`.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass
class SocketBody:
    """Bytes [start, stop) of an object: `head` arrived with the response header, the other
    `remaining` bytes are still to be read from the socket `fd` (non-blocking)."""

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    head: bytes
    fd: int
    remaining: int
    read_timeout: float

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def raw_reads_possible(url: str) -> bool:
    """Whether a presigned URL can be read off a plain socket: http, and no proxy for it."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    return "http" not in proxies or bool(urllib.request.proxy_bypass(parts.hostname))


def open_raw(url: str, start: int, stop: int, read_timeout: float) -> SocketBody | None:
    """GET bytes [start, stop) of the object at the presigned `url` (blocking: a thread's).

    None when the store does not answer exactly those bytes (absent, an error, a short object):
    the caller then takes the ordinary path, whose retries and error mapping apply.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=CONNECT_TIMEOUT)
    try:
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        connection.request("GET", f"{parts.path}?{parts.query}",
                           headers={"Range": f"bytes={start}-{stop - 1}"})
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        log.debug("raw s3 read of %s failed to open: %s", parts.path, exc)
        return None
    if not _answers(response, start, stop):
        log.debug("raw s3 read of %s: status %s, %s", parts.path, response.status,
                  response.getheader("Content-Range"))
        response.close()
        connection.close()
        return None
    try:
        # The header's last read may have taken some of the body into the file's buffer.
        buffered = response.fp.peek() if response.fp is not None else b""
        head = response.fp.read(min(len(buffered), stop - start)) if buffered else b""
    except (OSError, http.client.HTTPException):
        response.close()
        connection.close()
        return None
    assert connection.sock is not None
    return SocketBody(connection, response, head, connection.sock.fileno(),
                      stop - start - len(head), read_timeout)


def _answers(response: http.client.HTTPResponse, start: int, stop: int) -> bool:
    """A 206 with exactly [start, stop), sent with a Content-Length (no chunked coding)."""
    if response.status != 206 or response.chunked:
        return False
    match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
    with contextlib.suppress(TypeError, ValueError):
        return (match is not None and int(match[1]) == start and int(match[2]) == stop - 1
                and int(response.getheader("Content-Length") or -1) == stop - start)
    return False
