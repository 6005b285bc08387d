"""Helpers for the `cargohold` client CLI tests (tests/test_cli_*.py).

* The CNCF reference registry (Debian's ``docker-registry``) on a free port with a temporary
  filesystem root and deletes enabled, optionally behind htpasswd (bcrypt) Basic auth.
* ``Cli``: runs the client commands in-process (click's CliRunner) with a private
  ``DOCKER_CONFIG``, or as a real subprocess to check exit codes and stderr.
* ``FaultyProxy``: an HTTP proxy on 127.0.0.1 in front of a registry that can drop a chunk
  upload's connection, tamper with blob downloads, or slow uploads down to expose concurrency.
* ``FakeEcr``: a tiny ECR-compatible endpoint (``POST /`` with ``X-Amz-Target``).

Nothing here talks to anything but 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import requests
from aiohttp import ClientSession, ClientTimeout, web
from click.testing import CliRunner, Result

REFERENCE_BIN = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_of(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def clients_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("CARGOHOLD_REQUIRE_CLIENTS"))


def missing(what: str, hint: str) -> None:
    message = f"{what} is not available ({hint})"
    if clients_required():
        pytest.fail(f"{message}, but CI/CARGOHOLD_REQUIRE_CLIENTS is set", pytrace=False)
    pytest.skip(message)


# ------------------------------------------------------------------------ reference registry

def make_htpasswd(path: Path, users: dict[str, str]) -> None:
    try:
        import bcrypt
    except ImportError:
        missing("bcrypt", "pip install bcrypt")
        raise
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}"
             for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")


class ReferenceRegistry:
    """``docker-registry serve`` on 127.0.0.1:<free port> with a temporary storage root."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.port = free_port()
        self.users = dict(users or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = digest.split(":", 1)
        return (self.storage / "docker" / "registry" / "v2" / "blobs" / algorithm /
                hexpart[:2] / hexpart / "data")

    def start(self) -> ReferenceRegistry:
        binary = shutil.which("docker-registry") or REFERENCE_BIN
        if not os.path.exists(binary):
            missing("docker-registry", "apt-get install -y docker-registry")
        self.storage.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            htpasswd = self.workdir / "htpasswd"
            make_htpasswd(htpasswd, self.users)
            auth = f"auth:\n  htpasswd:\n    realm: cargohold-test\n    path: {htpasswd}\n"
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n" + auth)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     stdin=subprocess.DEVNULL)
        log.close()
        _STARTED.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


_STARTED: list[ReferenceRegistry] = []
_SHARED: dict[str, ReferenceRegistry] = {}


@atexit.register
def _stop_all() -> None:
    for server in _STARTED:
        server.stop()


def shared_reference(tmp_path_factory: pytest.TempPathFactory,
                     users: dict[str, str] | None = None) -> ReferenceRegistry:
    """One reference registry per configuration for the whole test session."""
    key = json.dumps(users or {}, sort_keys=True)
    server = _SHARED.get(key)
    if server is None or server.proc is None or server.proc.poll() is not None:
        server = ReferenceRegistry(tmp_path_factory.mktemp("reference-registry"), users).start()
        _SHARED[key] = server
    return server


# ------------------------------------------------------------------------------ the CLI

def cli_group() -> click.Group:
    """The whole ``cargohold`` command group, as the entry point runs it."""
    from cargohold.cli import main

    return main


SHIM = "from cargohold.cli import main\nmain(prog_name='cargohold')\n"


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs client commands with a private Docker config folder."""

    docker_config: Path
    env: dict[str, str | None] = field(default_factory=dict)

    def _env(self) -> dict[str, str | None]:
        """A private Docker config and no AWS credentials unless a test gives some (``None``
        unsets a variable); no instance-metadata lookups on a machine that has none."""
        none = str(self.docker_config.parent / "no-aws-file")
        return {"DOCKER_CONFIG": str(self.docker_config), "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
                "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_CONFIG_FILE": none,
                "AWS_EC2_METADATA_DISABLED": "true", **self.env}

    def __call__(self, *args: str, input: str | None = None, expect: int | None = 0,
                 cwd: Path | None = None) -> Outcome:
        runner = CliRunner()
        old = os.getcwd()
        try:
            if cwd is not None:
                os.chdir(cwd)
            result: Result = runner.invoke(cli_group(), list(args), input=input,
                                           env=self._env(), catch_exceptions=True)
        finally:
            os.chdir(old)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"cargohold {' '.join(args)} raised "
                                 f"{result.exception!r}") from result.exception
        outcome = Outcome(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)
        if expect is not None:
            assert outcome.exit_code == expect, (
                f"cargohold {' '.join(args)} exited {outcome.exit_code}, expected {expect}\n"
                f"stdout: {outcome.stdout}\nstderr: {outcome.stderr}")
        return outcome

    def json(self, *args: str, **kwargs: Any) -> Any:
        return self(*args, "--output", "json", **kwargs).json()

    def subprocess(self, *args: str, input: str | None = None,
                   cwd: Path | None = None) -> Outcome:
        """A real ``cargohold`` process (exit codes, stderr, no TTY)."""
        env = {k: v for k, v in {**os.environ, **self._env()}.items() if v is not None}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, "-c", SHIM, *args], capture_output=True,
                              text=True, input=input, env=env, timeout=CLI_TIMEOUT,
                              cwd=cwd, check=False)
        return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(outcome: Outcome, *needles: str) -> None:
    assert outcome.exit_code == 1, (outcome.exit_code, outcome.stdout, outcome.stderr)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {outcome.stderr!r}"
    assert lines[0].startswith("Error: "), lines
    assert "Traceback" not in outcome.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


# ------------------------------------------------------------------------------ HTTP fixtures

class BackgroundServer:
    """An aiohttp application on 127.0.0.1 served from a thread with its own event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> BackgroundServer:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("background server did not start")
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
               "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class FaultyProxy:
    """A forwarding proxy with switchable faults.

    * ``drop_patch``: the Nth PATCH (1-based) has its connection cut; with
      ``forward_dropped`` the chunk first reaches the registry (only the answer is lost).
    * ``tamper_blobs``: blob GETs get their first byte flipped.
    * ``slow_puts``: seconds to hold each upload PUT, to observe concurrency.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.drop_patch: int | None = None
        self.forward_dropped = False
        self.tamper_blobs = False
        self.slow_puts = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.patches = 0
        self.inflight = 0
        self.max_inflight = 0
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = BackgroundServer(app)
        self._session: ClientSession | None = None

    @property
    def host(self) -> str:
        return self.server.host

    def start(self) -> FaultyProxy:
        self.server.start()
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._session is not None:
                await self._session.close()

        if self.server.loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self.server.loop).result(10)
        self.server.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=120),
                                          auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        body = await request.read()
        if request.method == "PATCH":
            self.patches += 1
            if self.drop_patch is not None and self.patches == self.drop_patch:
                if self.forward_dropped:
                    async with self._session.request(
                            "PATCH", self.upstream + request.path_qs, headers=headers,
                            data=body, allow_redirects=False) as resp:
                        await resp.read()
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
        is_put = request.method == "PUT" and "/blobs/uploads/" in request.path
        if is_put:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if is_put and self.slow_puts:
                await asyncio.sleep(self.slow_puts)
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             headers=headers, data=body if body else None,
                                             allow_redirects=False) as resp:
                data = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items()
                               if k.lower() not in HOP_HEADERS}
                location = out_headers.get("Location")
                if location and location.startswith(self.upstream):
                    out_headers["Location"] = location[len(self.upstream):]
                if (self.tamper_blobs and request.method == "GET" and "/blobs/" in request.path
                        and "/uploads/" not in request.path and resp.status == 200 and data):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                return web.Response(status=resp.status, body=data if request.method != "HEAD"
                                    else None, headers=out_headers)
        finally:
            if is_put:
                self.inflight -= 1


class FakeEcr:
    """An ECR-compatible endpoint: DescribeImages answers from ``details``; /v2/ is 200."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        self.details = details
        self.calls: list[dict[str, Any]] = []
        app = web.Application()
        app.router.add_post("/", self._ecr)
        app.router.add_get("/v2/", self._v2)
        self.server = BackgroundServer(app)

    @property
    def host(self) -> str:
        return self.server.host

    def start(self) -> FakeEcr:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    async def _v2(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _ecr(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        body = json.loads(await request.read() or b"{}")
        self.calls.append({"target": target, "body": body,
                           "authorization": request.headers.get("Authorization", "")})
        if not target.endswith(".DescribeImages"):
            return web.json_response({"__type": "UnknownOperationException"}, status=400)
        if body.get("repositoryName") == "missing":
            return web.json_response({"__type": "RepositoryNotFoundException",
                                      "message": "The repository does not exist"}, status=400,
                                     content_type="application/x-amz-json-1.1")
        status = (body.get("filter") or {}).get("tagStatus", "ANY")
        details = [d for d in self.details
                   if status == "ANY" or (status == "TAGGED") == bool(d.get("imageTags"))]
        return web.json_response({"imageDetails": details},
                                 content_type="application/x-amz-json-1.1")


def write_files(root: Path, files: dict[str, bytes | str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def snapshot(root: Path) -> set[str]:
    """Every path below root (to prove that nothing was written)."""
    if not root.exists():
        return set()
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
