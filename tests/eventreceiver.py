"""A real HTTP receiver of registry events: an aiohttp app on its own thread and loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST. `behaviour(path, attempt_of_this_body)` picks the answer: an HTTP
    status, or "hang" to wait past any client timeout."""

    port: int = field(default_factory=free_port)
    behaviour: Callable[[str, int], int | str] = lambda path, attempt: 200
    received: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    _attempts: dict[tuple[str, bytes], int] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _closing: asyncio.Event | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        item = Received(request.path, dict(request.headers), body)
        with self._lock:
            self.received.append(item)
            key = (request.path, body)
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        answer = self.behaviour(request.path, attempt)
        if answer == "hang":
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 10)
            answer = 200
        if answer == 200:
            with self._lock:
                self.accepted.append(item)
        return web.Response(status=int(answer))

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._closing = asyncio.Event()
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._runner is not None:
            # Shut down on the receiver's loop (hanging handlers are cancelled), then stop it.
            if self._closing is not None:
                self._loop.call_soon_threadsafe(self._closing.set)
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                done.result(15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def accepted_on(self, path: str) -> list[Received]:
        with self._lock:
            return [item for item in self.accepted if item.path == path]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        """Poll until `predicate()` holds (a bounded wait, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        assert predicate(), f"condition not met; received {len(self.received)} requests"
