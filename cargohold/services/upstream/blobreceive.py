"""The first pull of a blob into a local (filesystem) store: the upstream's body is received
off the event loop, on one thread with a blocking socket, straight into one reusable buffer,
then hashed and written to the upload file by that same thread; clients are served from the
file as it fills (`filling`, `http.growing`).

Why: through aiohttp every piece was copied by its parser, handed across threads to be hashed
and written, and copied again on its way to the client, all on two shared cores. Here each
byte is copied once in (socket to buffer) and once into the page cache, and hashlib and
os.write release the GIL. The request itself is resolved by `UpstreamClient` (its token cache
and challenge handling, its error mapping); redirects (to object storage) are followed without
the Authorization header when they leave the upstream's origin, as aiohttp does.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import ssl
import uuid
from urllib.parse import urljoin, urlsplit

from cargohold.services.threads import in_thread
from cargohold.services.upstream.blobfetch import transfer_failed, transfer_problem
from cargohold.services.upstream.client import UpstreamClient
from cargohold.services.upstream.filling import Filling
from cargohold.storage.filesystem import WRITEBACK_EVERY, FilesystemBlobStore, start_writeback
from cargohold.wire.digest import Digest

PIECE = 1 << 20  # bytes read, hashed and written at a time (one reusable buffer)
REDIRECTS = 10  # as aiohttp
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "cargohold"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class BlockingGet:
    """One blob GET on a blocking connection (used from a thread): follows redirects, keeps
    the connection for the body, and can be aborted from another thread."""

    def __init__(self, url: str, authorization: str | None, connect_timeout: float,
                 read_timeout: float) -> None:
        self.url = url
        self.authorization = authorization
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._connection: http.client.HTTPConnection | None = None
        self._aborted = False

    def open(self) -> http.client.HTTPResponse:
        url, authorization = self.url, self.authorization
        for _ in range(REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme == "https":
                connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.netloc, timeout=self.connect_timeout,
                    context=ssl.create_default_context())
            else:
                connection = http.client.HTTPConnection(parts.netloc,
                                                        timeout=self.connect_timeout)
            self.close()
            self._connection = connection
            if self._aborted:
                raise ConnectionAbortedError("aborted")
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.read_timeout)
            headers = {"User-Agent": USER_AGENT}
            if authorization:
                headers["Authorization"] = authorization
            target = parts.path or "/"
            connection.request("GET", f"{target}?{parts.query}" if parts.query else target,
                               headers=headers)
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            response.close()
            following = urljoin(url, location)
            if _origin(following) != _origin(url):
                authorization = None  # e.g. a presigned object-storage URL
            url = following
        raise http.client.HTTPException(f"more than {REDIRECTS} redirects")

    def abort(self) -> None:
        """Unblock a thread reading this connection (any thread may call this)."""
        self._aborted = True
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket's: no TLS I/O

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class FileTransfer:
    """One upstream blob into an upload file of a filesystem store, verified, then committed."""

    def __init__(self, blobs: FilesystemBlobStore, client: UpstreamClient, path: str,
                 repository: str, digest: Digest, connect_timeout: float,
                 read_timeout: float) -> None:
        self.blobs = blobs
        self.client = client
        self.path = path
        self.repository = repository
        self.digest = digest
        self.timeouts = (connect_timeout, read_timeout)
        self.request: BlockingGet | None = None
        self.response: http.client.HTTPResponse | None = None
        self.filling: Filling | None = None
        self.upload_id = str(uuid.uuid4())

    async def open(self) -> Filling:
        """Send the GET (answering one auth challenge) and create the upload file; raises
        UpstreamError as `UpstreamClient.request` does."""
        for attempt in range(2):
            request = BlockingGet(self.client.url(self.path),
                                  self.client.authorization(self.repository), *self.timeouts)
            self.request = request
            try:
                response = await in_thread(request.open, "upstream-get", request.abort)
            except (OSError, http.client.HTTPException) as exc:
                request.close()
                raise self.client.error(None, f"unreachable ({type(exc).__name__}: {exc})"
                                        ) from None
            if response.status == 401 and attempt == 0:
                challenge = response.getheader("WWW-Authenticate") or ""
                request.close()
                await self.client.authenticate(challenge, self.repository)
                continue
            if response.status >= 400:
                request.close()
                raise self.client.refusal("GET", self.path, response.status, response.reason,
                                          response.getheader("Retry-After"))
            self.response = response
            break
        assert self.response is not None
        await self.blobs.create_upload(self.upload_id)
        reader = os.open(self.blobs.upload_path(self.upload_id), os.O_RDONLY)
        self.filling = Filling(self.response.length, reader)
        return self.filling

    async def run(self) -> int:
        """Receive, verify and commit the blob; returns its size. Raises (storing nothing, the
        clients' responses cut short) when the transfer fails or the bytes do not match."""
        assert self.request is not None and self.response is not None
        assert self.filling is not None
        request, response, filling = self.request, self.response, self.filling
        try:
            async with self.blobs.open_upload(self.upload_id) as writer:
                fd = writer.fd
                size = await in_thread(lambda: self._receive(response, fd, filling),
                                       "upstream-receive", request.abort)
            # Verified: the clients are sending the end while the blob is fsynced and renamed
            # (should that fail, nothing is stored and the next pull fetches again).
            await self.blobs.commit_upload(self.upload_id, size, str(self.digest))
            return size
        except BaseException as exc:
            filling.fail(exc if isinstance(exc, Exception)
                         else ConnectionAbortedError("the upstream fetch was cancelled"))
            await self.blobs.delete_upload(self.upload_id)
            raise

    def close(self) -> None:
        if self.request is not None:
            self.request.close()
        if self.filling is not None:
            self.filling.close()

    def _receive(self, response: http.client.HTTPResponse, fd: int, filling: Filling) -> int:
        """The body into `fd`, hashed on the way (this thread); returns the size once the
        digest verified. The newest piece is not servable until then."""
        size = response.length
        digest = hashlib.new(self.digest.algorithm)
        buffer = memoryview(bytearray(PIECE))
        received = flushed = 0
        while True:
            try:
                count = response.readinto(buffer)
            except (OSError, http.client.HTTPException) as exc:
                raise transfer_failed(self.client, self.digest, received, exc) from None
            if not count:
                break
            piece = buffer[:count]
            digest.update(piece)
            while piece:  # an OSError here is the disk's (full, failing): raised as it is
                piece = piece[os.write(fd, piece):]
            filling.advance(received)  # everything before this piece
            received += count
            if start_writeback is not None and received - flushed >= WRITEBACK_EVERY:
                start_writeback(fd, flushed, received - flushed)
                flushed = received
        problem = transfer_problem(self.client, self.digest, size, received,
                                   digest.hexdigest())
        if problem is not None:
            raise problem
        filling.complete(received)
        return received

