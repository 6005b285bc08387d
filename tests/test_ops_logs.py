"""Logs: one structured access-log line per request (text or JSON), X-Request-ID accepted or
generated and carried into the audit log, and no secret in any log line."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import requests
from ecrhelpers import ecr_client

from tests import ocihelpers as oh


def access_lines(log: str) -> list[dict[str, Any]]:
    """The JSON access-log entries of a server log."""
    entries = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "cargohold.access":
                entries.append(entry)
    return entries


def test_json_access_log_and_request_ids(make_registry: Callable[..., Any]) -> None:
    server = make_registry(env={"CARGOHOLD_ACCESS_LOG": "true", "CARGOHOLD_LOG_FORMAT": "json"})
    repo = "logs/app"
    image = oh.build_image(server.url, repo)
    pushed = requests.put(oh.manifest_url(server.url, repo, "v1"), data=image.body, timeout=30,
                          headers={"Content-Type": image.media_type,
                                   "X-Request-ID": "ci-run-42.push"})
    assert pushed.headers["X-Request-ID"] == "ci-run-42.push"
    generated = requests.get(server.url + "/v2/", timeout=30).headers["X-Request-ID"]
    assert len(generated) == 32
    for bad in ("has space", "x" * 129, "semi;colon", "new\tline"):
        answer = requests.get(server.url + "/v2/", headers={"X-Request-ID": bad}, timeout=30)
        assert answer.headers["X-Request-ID"] not in (bad, generated)
        assert len(answer.headers["X-Request-ID"]) == 32
    missing = requests.get(server.url + f"/v2/{repo}/manifests/nope", timeout=30)
    assert missing.status_code == 404 and missing.headers["X-Request-ID"]

    server.stop()  # flush the logs
    log = server.log()
    for line in log.splitlines():
        assert line.startswith("{"), line  # every line is a JSON object
    entries = access_lines(log)
    push = next(e for e in entries if e["request_id"] == "ci-run-42.push")
    assert push["method"] == "PUT" and push["route"] == "/v2/{name}/manifests/{reference}"
    assert push["repository"] == repo and push["status"] == 201
    assert push["bytes_in"] == image.size and push["duration_ms"] >= 0
    assert {"user", "bytes_out", "remote"} <= set(push)
    assert any(e["request_id"] == generated for e in entries)
    assert any(e["status"] == 404 and e["route"] == "/v2/{name}/manifests/{reference}"
               for e in entries)
    assert not any("nope" in json.dumps(e) for e in entries)  # no raw paths
    # The state-changing request's audit row carries its request id.
    with sqlite3.connect(server.data_dir / "metadata.db") as db:
        ids = {row[0] for row in db.execute("SELECT request_id FROM audit_events")}
    assert "ci-run-42.push" in ids
    # ... and the operator finds it by that id with the CLI, in both output formats.
    cli = [sys.executable, "-m", "cargohold", "admin", "audit", "--data-dir", str(server.data_dir),
           "--request-id", "ci-run-42.push"]
    rows = json.loads(subprocess.run([*cli, "--output", "json"], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)
    assert rows and {row["request_id"] for row in rows} == {"ci-run-42.push"}
    assert {row["repository"] for row in rows} == {repo}
    table = subprocess.run(cli, check=True, capture_output=True, text=True, timeout=60).stdout
    assert "REQUEST_ID" in table.splitlines()[0] and "ci-run-42.push" in table


def test_no_secret_reaches_the_logs(make_registry: Callable[..., Any]) -> None:
    metrics_token = "metrics-token-never-logged-000"
    server = make_registry(anonymous=False, env={
        "CARGOHOLD_ACCESS_LOG": "true", "CARGOHOLD_LOG_LEVEL": "DEBUG",
        "CARGOHOLD_METRICS_TOKEN": metrics_token})
    key_id, secret = server.admin_credentials
    url, repo = server.url, "logs/secret"
    secrets: list[str] = [secret, metrics_token]

    def basic(user: str, password: str) -> dict[str, str]:
        value = base64.b64encode(f"{user}:{password}".encode()).decode()
        secrets.append(value)
        return {"Authorization": f"Basic {value}"}

    # Basic with an access key, and a wrong secret.
    assert requests.get(url + "/v2/", headers=basic(key_id, secret), timeout=30).ok
    wrong = "wrong-secret-also-never-logged"
    secrets.append(wrong)
    assert requests.get(url + "/v2/", headers=basic(key_id, wrong),
                        timeout=30).status_code == 401
    # A Bearer token from the token endpoint.
    token = requests.get(url + "/v2/token", params={"scope": f"repository:{repo}:pull,push"},
                         headers=basic(key_id, secret), timeout=30).json()["token"]
    secrets.append(token)
    assert requests.get(url + f"/v2/{repo}/tags/list", headers={
        "Authorization": f"Bearer {token}"}, timeout=30).status_code in (200, 404)
    # SigV4 (boto3) and the temporary password it hands out, used as Basic AWS:password.
    ecr = ecr_client(url, key_id, secret)
    auth = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    secrets.append(auth)
    password = base64.b64decode(auth).decode().split(":", 1)[1]
    secrets.append(password)
    assert requests.get(url + "/v2/", headers=basic("AWS", password), timeout=30).ok
    # A user's own password.
    user_password = "user-password-never-logged-9"
    secrets.append(user_password)
    subprocess.run([sys.executable, "-m", "cargohold", "admin", "users", "create", "alice",
                    "--password-stdin", "--data-dir", str(server.data_dir)],
                   input=user_password + "\n", text=True, capture_output=True, check=True,
                   timeout=60)
    assert requests.get(url + "/v2/", headers=basic("alice", user_password), timeout=30).ok
    assert requests.get(url + "/metrics", headers={"Authorization": f"Bearer {metrics_token}"},
                        timeout=30).ok

    server.stop()
    log = server.log()
    assert "status=200" in log and "status=401" in log  # the access log was on
    for value in secrets:
        assert value not in log, f"a secret ({value[:6]}...) reached the server log"
    assert "Authorization" not in log and "X-Amz" not in log
