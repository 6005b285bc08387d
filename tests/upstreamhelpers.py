"""Helpers for the pull-through cache tests: the CNCF registry as an upstream with its access
log on (so a test counts the upstream's GETs), and a faulty-network test double: a tiny aiohttp
upstream that cuts blob bodies short, sends wrong bytes, answers 429/503, sends slowly or
redirects."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests
from aiohttp import web
from clihelpers import make_htpasswd
from conftest import free_port

PAYLOAD = b"0123456789abcdef" * 65536  # 1 MiB the faulty upstream serves
BIG_SIZE = 8 << 20  # the big-*, slow and redirect modes' blobs: one per repository
BIG_PIECE = 256 << 10


def big_payload(repo: str) -> bytes:
    """The blob the faulty upstream's big modes serve for `repo` (distinct per repository, so
    that every test makes a real first pull)."""
    return random.Random(repo).randbytes(BIG_SIZE)


def big_digest(repo: str) -> str:
    return "sha256:" + hashlib.sha256(big_payload(repo)).hexdigest()


class LoggedRegistry:
    """`docker-registry serve` on a free loopback port, logging every request."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.users = users or {}
        self.log_path = workdir / "upstream.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LoggedRegistry:
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        auth = ""
        if self.users:
            make_htpasswd(self.workdir / "htpasswd", self.users)
            auth = (f"auth:\n  htpasswd:\n    realm: upstream\n"
                    f"    path: {self.workdir / 'htpasswd'}\n")
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n" + auth)
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, method: str, path: str) -> int:
        """How many requests `METHOD path` the upstream has logged."""
        return len(re.findall(rf'"{method} {re.escape(path)} HTTP/1\.1"', self.log()))


class FaultyUpstream:
    """An aiohttp upstream (in a thread) whose blob transfers fail in chosen ways:
    /v2/cut/… announces the whole payload and sends half, /v2/wrong/… sends other bytes,
    /v2/status-<N>/… answers N. With `big_payload(repo)`: /v2/big/… sends it, big-cut/…
    sends 6 of its 8 MiB, big-wrong/… flips its last byte, slow/… sends it in pieces 20 ms
    apart, redirect/… answers 307 to slow/…, auth-redirect/… asks for Basic credentials and
    then redirects to plain/… on another origin (localhost), which notes the Authorization
    header it got in `redirected_auth`. It counts the blob GETs it received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.gets = 0
        self.digest = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
        self.redirected_auth: list[str | None] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        if mode.startswith("status-"):
            return web.Response(status=int(mode.split("-", 1)[1]), headers={"Retry-After": "7"})
        if request.method == "GET":
            self.gets += 1
        if mode in ("big", "big-cut", "big-wrong", "slow", "plain", "redirect",
                    "auth-redirect"):
            return await self._big(request, mode)
        response = web.StreamResponse(headers={"Docker-Content-Digest": self.digest})
        response.content_length = len(PAYLOAD)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if mode == "cut":
            await response.write(PAYLOAD[: len(PAYLOAD) // 2])
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write(bytes(reversed(PAYLOAD)))
        await response.write_eof()
        return response

    async def _big(self, request: web.Request, mode: str) -> web.StreamResponse:
        rest = request.path.split("/", 3)[3]
        payload = big_payload(request.match_info["repo"])
        if mode == "redirect":
            return web.Response(status=307, headers={"Location": f"/v2/slow/{rest}"})
        if mode == "auth-redirect":
            if not request.headers.get("Authorization", "").startswith("Basic "):
                return web.Response(status=401,
                                    headers={"WWW-Authenticate": 'Basic realm="faulty"'})
            return web.Response(status=307, headers={
                "Location": f"http://localhost:{self.port}/v2/plain/{rest}"})
        if mode == "plain":
            self.redirected_auth.append(request.headers.get("Authorization"))
        response = web.StreamResponse(headers={
            "Docker-Content-Digest": "sha256:" + hashlib.sha256(payload).hexdigest()})
        response.content_length = len(payload)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        body = payload
        if mode == "big-cut":
            body = body[: 6 << 20]
        elif mode == "big-wrong":
            body = body[:-1] + bytes([body[-1] ^ 1])
        for start in range(0, len(body), BIG_PIECE):
            await response.write(body[start:start + BIG_PIECE])
            if mode == "slow":
                await asyncio.sleep(0.02)
        if mode == "big-cut":
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v2/", self._base)
        app.router.add_get("/v2/{mode}/{repo}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{mode}/{repo}/manifests/{ref}", self._blob)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> FaultyUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
