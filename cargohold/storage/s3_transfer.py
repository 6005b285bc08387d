"""S3 data transfers on the event loop: botocore signs, aiohttp moves the bytes.

Why: botocore is synchronous. Through it, every read of a blob was a hop to a thread and back,
and the next read from S3 waited until the previous chunk had reached the client; a profile of
a proxied pull showed the worker idle most of the time. Here each data request (GetObject,
HeadObject, PutObject, UploadPart) goes to a URL that botocore presigns locally (SigV4 in the
query string, payload unsigned): no extra round trip, the same credential chain and endpoint
rules as every other call. aiohttp reads from S3 in the background with a large buffer while
the previous chunk is written to the client, and uploads stream as the request body arrives.

Control operations (multipart create/complete, copies, listings, deletes) stay on botocore:
they are few per upload, and botocore parses their XML replies. Errors come back as
botocore's ClientError with S3's error code, so callers handle both paths alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import aiohttp
import yarl
from botocore.exceptions import ClientError

from cargohold.storage.s3_parts import ReadBudget, read_parts

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 4  # as botocore's "standard" retry mode
READ_CHUNK = 1024 * 1024
READ_BUFFER = 1024 * 1024  # aiohttp reads ahead up to about twice this per response
READ_TIMEOUT = 120.0  # seconds a read may wait for the store's next byte
URL_EXPIRY = 900
URL_REUSE = 60  # seconds a presigned GetObject URL is reused, well within URL_EXPIRY
URL_CACHE = 4096
_RETRY_STATUS = {500, 502, 503, 504}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                "Throttling", "ThrottlingException"}
_TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
_XML_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</\1>")


class S3Transfer:
    """Signed data requests to one bucket, over an aiohttp session of the running loop.

    A read longer than one part that starts slower than `parallel_below` bytes/s goes on as
    parallel ranged GETs (storage/s3_parts.py): `window` parts of `part_size` bytes in flight,
    within `budget`, the bytes this process may read ahead (a server holds one store, so one
    budget, per worker process).
    """

    def __init__(self, client: Any, bucket: str, part_size: int = 8 * 1024 * 1024,
                 window: int = 4, budget: ReadBudget | None = None,
                 parallel_below: float = 0.0) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.window = window
        self.parallel_below = parallel_below
        self.budget = budget if budget is not None else ReadBudget(32 * part_size)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._signed: dict[tuple[str, str, str], tuple[float, yarl.URL]] = {}

    def _url(self, operation: str, method: str, **params: Any) -> yarl.URL:
        """A presigned URL. A GetObject URL is reused for a while (signing costs about half a
        millisecond; a pull signs one per part and per resume, popular blobs are read often);
        the Range goes in a header, which the signature does not cover."""
        cached = operation == "get_object" and len(params) == 1
        if cached:
            entry = self._signed.get((operation, method, params["Key"]))
            if entry is not None and time.monotonic() - entry[0] < URL_REUSE:
                return entry[1]
        url = yarl.URL(self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=URL_EXPIRY,
            HttpMethod=method), encoded=True)
        if cached:
            if len(self._signed) >= URL_CACHE:
                self._signed.clear()
            self._signed[(operation, method, params["Key"])] = (time.monotonic(), url)
        return url

    def get_url(self, key: str) -> str:
        """A presigned GetObject URL for `key` (reused for a while, as `_url` says)."""
        return str(self._url("get_object", "GET", Key=key))

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            if self._session is not None and self._session.connector is not None:
                # A session belongs to one loop (tests run several in turn): let go of the
                # old loop's connections without it.
                self._session.connector._close()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=_ssl_context()),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT),
                read_bufsize=READ_BUFFER, auto_decompress=False, trust_env=True)
            self._loop = loop
        return self._session

    async def _request(self, operation: str, method: str, params: dict[str, Any],
                       headers: dict[str, str] | None = None,
                       data: bytes | AsyncIterable[bytes] | None = None
                       ) -> aiohttp.ClientResponse:
        """Send one request; retried on transient failures when its body can be sent again."""
        attempts = MAX_ATTEMPTS if data is None or isinstance(data, bytes) else 1
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http().request(
                    method, self._url(operation, method, **params), headers=headers, data=data)
            except _TRANSIENT:
                if attempt == attempts:
                    raise
                await _backoff(attempt)
                continue
            if response.status < 300:
                return response
            error = await _client_error(response, operation)
            response.release()
            code = error.response["Error"]["Code"]
            if attempt == attempts or (response.status not in _RETRY_STATUS
                                       and code not in _RETRY_CODES):
                raise error
            await _backoff(attempt)
        raise AssertionError("unreachable")

    async def get(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an object, with one GET. If that GET streams its first part
        slower than `parallel_below` bytes/s (from its first byte on, counting only the time
        spent waiting for the store), the rest comes as parallel parts, when the budget
        allows: a store close by is read with one request, a distant one faster."""
        if (end is None or self.window < 2 or end - start <= 2 * self.part_size
                or self.parallel_below <= 0):
            async for chunk in self._get(key, start, end):
                yield chunk
            return
        head = self._get(key, start, end)
        async with contextlib.aclosing(head):
            first = await anext(head, None)  # the wait for the first byte is not counted
            if first is None:
                return
            yield first
            position, waited = start + len(first), 0.0
            while position < start + self.part_size:
                began = time.monotonic()
                chunk = await anext(head, None)
                waited += time.monotonic() - began
                if chunk is None:
                    return
                position += len(chunk)
                yield chunk
            boundary = min(position + self.part_size, end)
            ahead = min(self.window * self.part_size, end - boundary)
            if ((position - start - len(first)) >= self.parallel_below * waited
                    or ahead <= 0 or not self.budget.take(ahead)):
                async for chunk in head:
                    yield chunk
                return
            log.debug("reading s3 object %s in parts from byte %d: one GET gave %.0f MB/s",
                      key, boundary, (position - start - len(first)) / max(waited, 1e-9) / 1e6)
            try:
                # The open GET goes on up to `boundary` while the parts after it start.
                parts = read_parts(lambda lo, hi: self._get(key, lo, hi), position, end,
                                   self.part_size, self.window, head, boundary)
                async with contextlib.aclosing(parts):
                    async for chunk in parts:
                        yield chunk
            finally:
                self.budget.give(ahead)

    async def _get(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) with one GET. A connection lost mid-way is resumed from where
        it stopped with a Range request, up to MAX_ATTEMPTS times."""
        position, failures = start, 0
        while True:
            headers = None
            if position or end is not None:
                headers = {"Range": f"bytes={position}-{'' if end is None else end - 1}"}
            response = await self._request("get_object", "GET", {"Key": key}, headers)
            try:
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    position += len(chunk)
                    yield chunk
                return
            except _TRANSIENT as exc:
                if end is not None and position >= end:
                    return
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise
                log.warning("reading s3 object %s: %s; resuming at byte %d", key, exc,
                            position)
            finally:
                response.release()

    async def size(self, key: str) -> int:
        """The object's size (HeadObject); ClientError 404 when it is absent."""
        response = await self._request("head_object", "HEAD", {"Key": key})
        response.release()
        return int(response.headers["Content-Length"])

    async def put(self, key: str, body: bytes | AsyncIterable[bytes], length: int) -> None:
        """PutObject. A streamed body is sent once, with its Content-Length: a body that
        fails or falls short ends the request, and S3 keeps nothing of it."""
        response = await self._request("put_object", "PUT", {"Key": key},
                                       {"Content-Length": str(length)}, body)
        response.release()

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """UploadPart; its ETag."""
        response = await self._request(
            "upload_part", "PUT", {"Key": key, "UploadId": upload_id, "PartNumber": number},
            {"Content-Length": str(len(body))}, body)
        response.release()
        return response.headers["ETag"]

    def close(self) -> None:
        """Close the connections. Synchronous: the caller may be on the session's loop (a
        server's shutdown), before it (a command), or after it closed (tests)."""
        session, loop, self._session = self._session, self._loop, None
        if session is None or session.closed:
            return
        if loop is not None and loop.is_running():
            task = loop.create_task(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop is not None and not loop.is_closed():
            loop.run_until_complete(session.close())
        elif session.connector is not None:
            # The loop is gone, and its transports with it: only mark the connector closed.
            session.connector._close()


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))


async def _client_error(response: aiohttp.ClientResponse, operation: str) -> ClientError:
    """S3's error reply as botocore would raise it (the code is the status for a HEAD)."""
    fields: dict[bytes, bytes] = {}
    if response.method != "HEAD":
        with contextlib.suppress(*_TRANSIENT):
            body = await response.content.read(64 * 1024)
            fields = {name: value for name, value in _XML_FIELD.findall(body)}
    code = fields.get(b"Code", b"").decode(errors="replace") or str(response.status)
    message = fields.get(b"Message", b"").decode(errors="replace") or response.reason or ""
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": response.status}},
                       _OPERATION_NAMES.get(operation, operation))


_OPERATION_NAMES = {"get_object": "GetObject", "head_object": "HeadObject",
                    "put_object": "PutObject", "upload_part": "UploadPart"}


def _ssl_context() -> ssl.SSLContext | bool:
    """AWS_CA_BUNDLE's trust store when it is set, as botocore uses it; else the system's."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else True
