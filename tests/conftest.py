"""Shared fixtures: a real Cargohold server started as a subprocess, driven over HTTP.

Set ``CARGOHOLD_TEST_REGISTRY_URL`` to run the spec-level tests against another registry
(for example the CNCF reference registry) instead of a freshly started Cargohold.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.clihelpers import Cli, host_of, shared_reference

EXTERNAL_URL = os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")
# The `seaweed_s3` session fixture: a real S3 store (SeaweedFS) for any test that asks for it.
pytest_plugins = ["seaweed"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RegistryProcess:
    """A `cargohold serve` process on a private port and data directory."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, anonymous: bool = True) -> None:
        self.data_dir = data_dir
        # Spec-level tests run with open access; the access-control tests pass anonymous=False.
        self.mode_args = ["--anonymous"] if anonymous else []
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def worker_args(self) -> list[str]:
        """One worker unless the test chooses (the default, one per CPU, would double every
        test server's processes on a 2-core machine)."""
        chosen = ("--workers" in self.extra_args or "--config" in self.extra_args
                  or "CARGOHOLD_WORKERS" in self.env)
        return [] if chosen else ["--workers", "1"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_credentials(self) -> tuple[str, str]:
        """The bootstrap administrator's access key id and secret."""
        values = dict(line.split(" = ", 1) for line in
                      (self.data_dir / "admin-credentials").read_text().splitlines()
                      if " = " in line)
        return values["aws_access_key_id"], values["aws_secret_access_key"]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cargohold", "serve", "--host", "127.0.0.1", *self.mode_args,
             "--port", str(self.port), "--data-dir", str(self.data_dir), *self.worker_args(),
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return
            except (requests.ConnectionError, requests.Timeout):  # slow on a busy machine
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def make_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory for private servers (restart tests, special configuration)."""
    started: list[RegistryProcess] = []

    def factory(extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                anonymous: bool = True) -> RegistryProcess:
        server = RegistryProcess(tmp_path_factory.mktemp("registry") / "data", extra_args, env,
                                 anonymous)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the registry under test, shared by the whole session."""
    if EXTERNAL_URL:
        yield EXTERNAL_URL.rstrip("/")
        return
    server = RegistryProcess(tmp_path_factory.mktemp("shared-registry") / "data")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def repo() -> str:
    """A fresh repository name, so tests sharing a server never see each other's data."""
    return f"test/{uuid.uuid4().hex[:12]}"


# -- the client CLI's tests -------------------------------------------------------------------

@pytest.fixture(params=["cargohold", "reference"])
def registry(request: pytest.FixtureRequest, registry_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> str:
    """host:port of a Cargohold and, in a second run, of the CNCF reference registry: the
    client works against any registry."""
    if request.param == "cargohold":
        return host_of(registry_url)
    return shared_reference(tmp_path_factory).host


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The cargohold client, with a Docker config of its own."""
    return Cli(tmp_path / "docker-config")
