"""Fixtures for the console's browser tests: a server with content, and Debian's Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.clihelpers import missing
from tests.conftest import RegistryProcess
from tests.console_content import Pusher

VIEWER = "viewer"
VIEWER_PASSWORD = "viewer-password-123"


@dataclass
class ConsoleServer:
    server: RegistryProcess
    key_id: str
    secret: str
    pushed: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url


def cargohold_admin(data_dir: Path, *args: str, stdin: str = "") -> str:
    result = subprocess.run([sys.executable, "-m", "cargohold", "admin", *args,
                             "--data-dir", str(data_dir)], input=stdin, capture_output=True,
                            text=True, check=True)
    return result.stdout


def start_console_server(data_dir: Path) -> ConsoleServer:
    server = RegistryProcess(data_dir, anonymous=False)
    server.start()
    key_id, secret = server.admin_credentials
    push = Pusher(server.url, (key_id, secret))
    pushed: dict[str, Any] = {"image": push.image("team/app", "1.0"),
                              "index": push.multiarch("team/app", "multi")}
    pushed["sbom"] = push.referrer("team/app", pushed["index"], "application/spdx+json",
                                   b'{"spdxVersion": "SPDX-2.3"}',
                                   {"org.opencontainers.image.created": "2026-01-01"})
    pushed["signature"] = push.referrer("team/app", pushed["index"],
                                        "application/vnd.dev.cosign.artifact.sig.v1+json",
                                        b"signature-bytes")
    pushed["chart"] = push.chart("charts/demo", "0.1.0")
    pushed["bundle"] = push.bundle("policies/authz", "1")
    pushed["cli_chart"] = push_chart_with_cli(server, data_dir.parent / "cli-chart")
    cargohold_admin(data_dir, "users", "create", VIEWER, "--password-stdin", "--no-key",
                    stdin=VIEWER_PASSWORD + "\n")
    policy = data_dir.parent / "viewer-policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:DescribeImages",
                                      "ecr:GetDownloadUrlForLayer"],
        "Resource": "arn:aws:ecr:*:*:repository/team/*"}]}))
    cargohold_admin(data_dir, "users", "put-policy", VIEWER, "ReadTeam", str(policy))
    return ConsoleServer(server, key_id, secret, pushed)


def push_chart_with_cli(server: RegistryProcess, workdir: Path) -> str:
    """Push a chart directory with the real `cargohold chart push` (Helm's OCI format)."""
    chart = workdir / "webapp"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: webapp\nversion: 2.4.1\nappVersion: \"9.9\"\n"
        "description: Pushed by the cargohold CLI\n")
    (chart / "values.yaml").write_text("image: nginx\n")
    (chart / "README.md").write_text("# Web app\n\nInstall with `helm install`.\n")
    (chart / "templates" / "service.yaml").write_text("kind: Service\n")
    config = workdir / "docker-config.json"
    cli = [sys.executable, "-m", "cargohold"]
    key_id, secret = server.admin_credentials
    subprocess.run([*cli, "login", server.host, "-u", key_id, "--password-stdin",
                    "--registry-config", str(config)], input=secret, text=True, check=True,
                   capture_output=True, timeout=120)
    subprocess.run([*cli, "chart", "push", str(chart), f"{server.host}/charts",
                    "--registry-config", str(config), "--no-progress"], check=True,
                   capture_output=True, timeout=120)
    return "charts/webapp:2.4.1"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    started = start_console_server(tmp_path_factory.mktemp("console") / "data")
    yield started
    started.server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    try:
        from playwright import sync_api as playwright_api
    except ImportError:
        playwright_api = None
    if playwright_api is None or executable is None:
        missing("playwright and Debian's chromium",
                "pip install -e '.[test]'; apt-get install chromium")
    assert playwright_api is not None and executable is not None
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("CARGOHOLD_SCREENSHOTS")
    path = Path(configured) if configured else tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(page: Any, url: str, key_id: str, secret: str) -> None:
    page.goto(f"{url}/console/")
    form = page.locator("form", has=page.get_by_label("Access key ID"))
    form.get_by_label("Access key ID").fill(key_id)
    form.get_by_label("Secret access key").fill(secret)
    form.get_by_role("button", name="Sign in").click()


def requests_session(url: str, key_id: str, secret: str) -> tuple[requests.Session, str]:
    """A signed-in HTTP session and its CSRF token (for forged-request tests)."""
    session = requests.Session()
    page = session.get(f"{url}/console/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    response = session.post(f"{url}/console/signin", data={
        "csrf": token.group(1), "access_key_id": key_id, "secret_access_key": secret},
        allow_redirects=False)
    assert response.status_code == 303, response.text
    page = session.get(f"{url}/console/")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return session, token.group(1)
