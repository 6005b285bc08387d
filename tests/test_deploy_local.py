"""deploy/local/start.py brings up the whole set (SeaweedFS, two nodes on PostgreSQL, nginx)
on one machine; pushes and pulls through nginx work, and it stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import free_port
from dbfixtures import postgres_database
from multinode import require_cluster_parts
from ocihelpers import EXTERNAL, random_bytes, sha256

START = Path(__file__).resolve().parent.parent / "deploy" / "local" / "start.py"
TIMEOUT = 60
pytestmark = pytest.mark.skipif(EXTERNAL, reason="starts its own cluster")


def credentials(path: Path) -> tuple[str, str]:
    values = dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)
    return values["aws_access_key_id"], values["aws_secret_access_key"]


def test_local_cluster_behind_nginx(tmp_path: Path) -> None:
    require_cluster_parts()
    port = free_port()
    with postgres_database() as database_url:
        proc = subprocess.Popen(
            [sys.executable, str(START), "--root", str(tmp_path / "cluster"), "--port", str(port),
             "--database-url", database_url],
            stdout=subprocess.PIPE, stderr=open(tmp_path / "start.log", "wb"),  # noqa: SIM115
            start_new_session=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, (tmp_path / "start.log").read_text()
            started = json.loads(line)
            base, nodes = started["url"], started["nodes"]
            assert base == f"http://127.0.0.1:{port}" and len(nodes) == 2
            auth = credentials(Path(started["admin_credentials"]))
            session = requests.Session()
            session.auth = auth
            repo = "deploy/app"
            # A chunked push through nginx: round-robin puts its requests on both nodes.
            data = random_bytes(6 * 1024 * 1024 + 5)
            post = session.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
            assert post.status_code == 202, post.text
            location = post.headers["Location"]
            half = len(data) // 2
            for start, chunk in ((0, data[:half]), (half, data[half:])):
                resp = session.patch(base + location, data=chunk, timeout=TIMEOUT, headers={
                    "Content-Range": f"{start}-{start + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream"})
                assert resp.status_code == 202, resp.text
            done = session.put(f"{base}{location}?digest={sha256(data)}", timeout=TIMEOUT)
            assert done.status_code == 201, done.text
            for url in [base, *(f"http://{node}" for node in nodes)]:
                resp = session.get(f"{url}/v2/{repo}/blobs/{sha256(data)}", timeout=TIMEOUT)
                assert resp.status_code == 200 and resp.content == data
            assert requests.get(f"{base}/v2/{repo}/blobs/{sha256(data)}",
                                timeout=TIMEOUT).status_code == 401
            health = requests.get(f"{base}/healthz", timeout=TIMEOUT).json()
            assert health["status"] == "ok"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=5)
        for node in nodes:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{node}/healthz", timeout=5)
