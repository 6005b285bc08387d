"""Two real Cargohold nodes sharing PostgreSQL, a SeaweedFS bucket and the secret key, with
nginx (deploy/local's configuration) in front of them, round-robin."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import RegistryProcess, free_port
from dbfixtures import postgres_available, postgres_database
from seaweed import SeaweedS3

DEPLOY_LOCAL = Path(__file__).resolve().parent.parent / "deploy" / "local"
sys.path.insert(0, str(DEPLOY_LOCAL))
from start import start_nginx  # noqa: E402 - deploy/local/start.py


def require_cluster_parts() -> None:
    if not os.environ.get("CI") and not postgres_available():
        pytest.skip("PostgreSQL not reachable")


class Front:
    """nginx in front of the nodes; quacks like a RegistryProcess for the shared helpers."""

    def __init__(self, root: Path, nodes: list[RegistryProcess]) -> None:
        self.port = free_port()
        self.nodes = nodes
        self.data_dir = nodes[0].data_dir  # the bootstrap administrator's credentials
        self.env = nodes[0].env  # node A's settings, for the admin CLI on its host
        self.proc: subprocess.Popen[bytes] | None = start_nginx(
            root, f"127.0.0.1:{self.port}", [node.host for node in nodes])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_credentials(self) -> tuple[str, str]:
        return self.nodes[0].admin_credentials

    def log(self) -> str:
        return "\n".join(node.log()[-3000:] for node in self.nodes)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None


@dataclass
class Cluster:
    a: RegistryProcess
    b: RegistryProcess
    front: Front
    bucket: str
    seaweed: SeaweedS3
    database_url: str
    extra: list[RegistryProcess] = field(default_factory=list)

    @property
    def nodes(self) -> list[RegistryProcess]:
        return [self.a, self.b]


@contextmanager
def node_pair(root: Path, seaweed: SeaweedS3, *, anonymous: bool = True,
              redirect: bool = False) -> Iterator[Cluster]:
    """Node A, then node B (A bootstraps the administrator), and nginx over both."""
    require_cluster_parts()
    bucket = seaweed.new_bucket()
    secret_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    with postgres_database() as database_url:
        env = {"CARGOHOLD_DATABASE_URL": database_url, "CARGOHOLD_SECRET_KEY": secret_key,
               **seaweed.blob_store_env(bucket, redirect=redirect)}
        nodes = [RegistryProcess(root / name / "data", env=env, anonymous=anonymous)
                 for name in ("node-a", "node-b")]
        front = None
        try:
            for node in nodes:
                node.data_dir.parent.mkdir(parents=True, exist_ok=True)
                node.start()
            front = Front(root / "nginx", nodes)
            yield Cluster(nodes[0], nodes[1], front, bucket, seaweed, database_url)
        finally:
            if front is not None:
                front.stop()
            for node in nodes:
                node.stop()


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False
