"""Runs the aiohttp application so that even requests its HTTP parser refuses get the spec's
JSON error envelope.

aiohttp answers a request it cannot parse (a line that is too long, an invalid character in
the path, a duplicated singleton header, garbage after a body) from `RequestHandler.handle_error`
with a plain-text 400, before any middleware runs. `EnvelopeRequestHandler` renders those as
`{"errors": [...]}`; `EnvelopeAppRunner` makes the server create it for every connection, and
`run_app` is `web.run_app` for one inherited socket with that runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_runner import GracefulExit
from aiohttp.web_server import Server

from cargohold.http.balanced_accept import BalancedSockSite, WorkerSlot
from cargohold.http.errors import API_VERSION_HEADER
from cargohold.wire.errors import ErrorCode, RegistryError

# Long enough for any name, digest or artifactType the API accepts to reach its handler and get
# the spec's own error; bounded so a connection cannot make the parser buffer without limit.
MAX_REQUEST_LINE = 64 * 1024
MAX_HEADER_FIELD = 16 * 1024
MAX_MESSAGE_SHOWN = 300
log = logging.getLogger(__name__)


class EnvelopeRequestHandler(RequestHandler):
    """aiohttp's connection handler, with parser errors answered in the JSON envelope."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            # The parent logs the traceback and refuses when a response is under way.
            super().handle_error(request, status, exc, message)
        elif request.writer.output_size > 0:
            raise ConnectionError("a response is already under way; cannot send an error")
        error = parser_error(status, exc, message, self.max_line_size)
        if status < 500:
            # A client's malformed request is not a server fault: one line, no traceback.
            log.info("refused a malformed request from %s: %s %s", request.remote,
                     error.status, error.message)
        response = web.Response(status=error.status, body=json.dumps(error.body()).encode(),
                                content_type="application/json",
                                headers={**API_VERSION_HEADER, **error.headers})
        response.force_close()
        return response


def parser_error(status: int, exc: BaseException | None, message: str | None,
                 max_line_size: int) -> RegistryError:
    """The spec error for a request the HTTP layer refused (status as aiohttp decided)."""
    if status >= 500:
        return RegistryError(ErrorCode.UNAVAILABLE, HTTPStatus(status).phrase.lower(),
                             status=status)
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        request_line = limit == max_line_size
        return RegistryError(
            ErrorCode.UNSUPPORTED,
            "request line is too long" if request_line else "a header field is too long",
            {"limit": limit},
            status=HTTPStatus.REQUEST_URI_TOO_LONG if request_line
            else HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
    text = (message or HTTPStatus(status).phrase).replace("\r", " ").replace("\n", " ")
    if len(text) > MAX_MESSAGE_SHOWN:
        text = text[:MAX_MESSAGE_SHOWN] + "..."
    return RegistryError(ErrorCode.UNSUPPORTED, f"malformed HTTP request: {text}",
                         status=status if 400 <= status < 500 else 400)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (cheaper per request and per thread hand-off,
    see bench/RESULTS.md), else asyncio's; CARGOHOLD_EVENT_LOOP=asyncio forces asyncio's."""
    if os.environ.get("CARGOHOLD_EVENT_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class EnvelopeServer(Server):
    """Makes `EnvelopeRequestHandler`s; counts its connections in `slot` when given one."""

    slot: WorkerSlot | None = None

    def __call__(self) -> RequestHandler:
        return EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if self.slot is not None:
            self.slot.changed(open=1)
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler,
                        exc: BaseException | None = None) -> None:
        if self.slot is not None:
            self.slot.changed(open=-1)
        super().connection_lost(handler, exc)


class EnvelopeAppRunner(web.AppRunner):
    """An AppRunner whose connections are `EnvelopeRequestHandler`s."""

    def __init__(self, app: web.Application, slot: WorkerSlot | None = None,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.slot = slot

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        # Same handler, request factory and settings; only the per-connection class differs.
        server = EnvelopeServer(made.request_handler, request_factory=made.request_factory,
                                handler_cancellation=made.handler_cancellation,
                                loop=asyncio.get_running_loop(), **made._kwargs)
        server.slot = self.slot
        return server


def run_app(app: web.Application, sock: socket.socket, access_log: logging.Logger | None,
            shutdown_timeout: float,
            access_log_class: type[AbstractAccessLogger] = AccessLogger,
            slot: WorkerSlot | None = None) -> None:
    """Serve `app` on `sock` until SIGTERM/SIGINT, then shut down gracefully (as run_app).
    With a `slot`, `sock` is shared by several workers and connections are balanced."""

    async def serve() -> None:
        runner = EnvelopeAppRunner(app, slot, handle_signals=True, access_log=access_log,
                                   shutdown_timeout=shutdown_timeout,
                                   access_log_class=access_log_class,
                                   max_line_size=MAX_REQUEST_LINE,
                                   max_field_size=MAX_HEADER_FIELD)
        await runner.setup()
        try:
            site = web.SockSite(runner, sock) if slot is None \
                else BalancedSockSite(runner, sock, slot)
            await site.start()
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
