"""The client CLI against a secure-by-default Cargohold (anonymous=False): the ECR-style login
followed by `images`, AWS credentials from the standard chain with the /v2 fallback, the JSON of
every `--output json` command, and the modes of pulled files."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from tests.clihelpers import Cli, assert_one_line_error, write_files
from tests.conftest import RegistryProcess

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    process = RegistryProcess(tmp_path_factory.mktemp("cli-json") / "data", anonymous=False)
    process.start()
    yield process
    process.stop()


def logged_in(server: RegistryProcess, workdir: Path, **env: str | None) -> Cli:
    """A CLI logged in the ECR way: `login-password | login HOST -u AWS --password-stdin`."""
    cli = Cli(workdir / "docker-config", env=dict(env))
    password = cli("login-password", "--data-dir", str(server.data_dir)).stdout.strip()
    cli("login", server.host, "-u", "AWS", "--password-stdin", input=password)
    return cli


def iso_time(value: Any) -> dt.datetime:
    assert isinstance(value, str), value
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def create_key(server: RegistryProcess, cli: Cli, user: str) -> tuple[str, str]:
    """A user without policies and its access key: valid SigV4 credentials that may do
    nothing."""
    out = cli("admin", "users", "create", user, "--data-dir", str(server.data_dir)).stdout
    key = re.search(r"access key id:\s+(\S+)", out)
    secret = re.search(r"secret access key:\s+(\S+)", out)
    assert key and secret, out
    return key.group(1), secret.group(1)


# ------------------------------------------------------------------------ ECR-style login

def test_ecr_style_login_then_images(server: RegistryProcess, tmp_path: Path) -> None:
    host = server.host
    cli = logged_in(server, tmp_path)
    write_files(tmp_path, {"a.txt": "a"})
    pushed = cli.json("push", f"{host}/ecrlogin/app:v1", str(tmp_path / "a.txt"))

    # No AWS credentials anywhere: the ECR API wants some, so auto falls back to /v2.
    plain = cli.json("images", f"{host}/ecrlogin/app")
    assert plain["source"] == "v2"
    assert [d["imageDigest"] for d in plain["imageDetails"]] == [pushed["digest"]]
    assert pushed["digest"] in cli("images", f"{host}/ecrlogin/app").stdout
    assert_one_line_error(cli("images", f"{host}/ecrlogin/app", "--api", "ecr", expect=None),
                          "ECR API", "wants AWS credentials")

    # Credentials the registry does not know (UnrecognizedClientException): /v2 again.
    cli.env.update({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000",
                    "AWS_SECRET_ACCESS_KEY": "not-a-secret"})
    assert cli.json("images", f"{host}/ecrlogin/app")["source"] == "v2"
    assert_one_line_error(cli("images", f"{host}/ecrlogin/app", "--api", "ecr", expect=None),
                          "ECR API", "refused", "UnrecognizedClient")

    # A real key whose user may do nothing (AccessDeniedException): /v2 with the login.
    key, secret = create_key(server, cli, "nopolicy")
    cli.env.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
    assert cli.json("images", f"{host}/ecrlogin/app")["source"] == "v2"

    # The shared-credentials file of the standard chain: the ECR API answers, with push times.
    cli.env.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                    "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "admin-credentials")})
    via_ecr = cli.json("images", f"{host}/ecrlogin/app")
    assert via_ecr["source"] == "ecr"
    [detail] = via_ecr["imageDetails"]
    assert detail["imageDigest"] == pushed["digest"] and detail["imageTags"] == ["v1"]
    pushed_at = iso_time(detail["imagePushedAt"])
    assert abs(pushed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(hours=1)
    table = cli("images", f"{host}/ecrlogin/app").stdout
    assert pushed_at.isoformat(timespec="seconds") in table


def test_aws_profile_in_home(server: RegistryProcess, tmp_path: Path) -> None:
    """The profile named by AWS_PROFILE in ~/.aws/credentials is part of the chain."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    admin = (server.data_dir / "admin-credentials").read_text().replace("[default]", "[ops]")
    (home / ".aws" / "credentials").write_text(admin)
    cli = logged_in(server, tmp_path, HOME=str(home), AWS_PROFILE="ops",
                    AWS_SHARED_CREDENTIALS_FILE=None)
    write_files(tmp_path, {"b.txt": "b"})
    cli("push", f"{server.host}/ecrlogin/profile:v1", str(tmp_path / "b.txt"))
    assert cli.json("images", f"{server.host}/ecrlogin/profile")["source"] == "ecr"


# ------------------------------------------------------------------------ JSON everywhere

def commands_with_output(group: click.Group, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found |= commands_with_output(command, path + " ")
        elif any(p.name == "output" for p in command.params):
            found.add(path)
    return found


def test_every_json_output_parses(server: RegistryProcess, tmp_path: Path) -> None:
    from cargohold.cli import administration, browsing, bundles, charts, serving, transfers

    host = server.host
    data_dir = ["--data-dir", str(server.data_dir)]
    cli = Cli(tmp_path / "docker-config", env={
        "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "admin-credentials")})
    ran: set[str] = set()

    def run(command: str, *args: str, **kwargs: Any) -> Any:
        ran.add(command)
        return cli.json(*command.split(), *args, **kwargs)

    password = cli("login-password", *data_dir).stdout.strip()
    login = run("login", host, "-u", "AWS", "--password-stdin", input=password)
    assert login["registry"] == host and login["username"] == "AWS"
    write_files(tmp_path, {"w.bin": os.urandom(5000), "sbom.json": "{}",
                           "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.0.0\n",
                           "policy/p.rego": "package p\n"})
    pushed = run("push", f"{host}/json/model:v1", str(tmp_path / "w.bin"))
    assert pushed["digest"].startswith("sha256:") and pushed["layers"][0]["size"] == 5000
    sbom = run("push", f"{host}/json/model", str(tmp_path / "sbom.json"), "--artifact-type",
               "application/spdx+json", "--subject", f"{host}/json/model:v1")
    assert sbom["subject"] == pushed["digest"]
    pulled = run("pull", f"{host}/json/model:v1", "-o", str(tmp_path / "out"))
    assert [f["path"] for f in pulled["files"]] == ["w.bin"]
    copied = run("copy", f"{host}/json/model:v1", f"{host}/json/copy:v1", "--recursive")
    assert copied["digest"] == pushed["digest"]
    chart = run("chart push", str(tmp_path / "chart"), f"{host}/json")
    assert chart["name"] == "demo" and chart["version"] == "1.0.0"
    chart_pull = run("chart pull", f"{host}/json/demo", "-o", str(tmp_path / "charts"))
    assert chart_pull["digest"] == chart["digest"]
    bundle = run("bundle push", str(tmp_path / "policy"), f"{host}/json/policy:1")
    assert bundle["files"]
    bundle_pull = run("bundle pull", f"{host}/json/policy:1", "-o", str(tmp_path / "b"))
    assert bundle_pull["digest"] == bundle["digest"]
    assert "json/model" in run("repos", host)["repositories"]
    assert run("tags", f"{host}/json/model")["tags"] == ["v1"]
    for api in ("ecr", "v2"):
        images = run("images", f"{host}/json/model", "--api", api)
        assert images["source"] == api
        digests = {d["imageDigest"] for d in images["imageDetails"]}
        assert {pushed["digest"], sbom["digest"]} <= digests
        if api == "ecr":
            for detail in images["imageDetails"]:
                iso_time(detail["imagePushedAt"])
    charts_only = run("images", f"{host}/json/demo", "--artifact-type", HELM_CONFIG)
    assert [d["imageTags"] for d in charts_only["imageDetails"]] == [["1.0.0"]]
    tree = run("tree", f"{host}/json/model:v1")
    assert tree["digest"] == pushed["digest"]
    assert sbom["digest"] in str(tree)
    shown = run("manifest", f"{host}/json/model:v1")
    assert shown["digest"] == pushed["digest"] and shown["manifest"]["schemaVersion"] == 2
    assert run("manifest", f"{host}/json/model:v1", "--descriptor")["size"] == shown["size"]
    assert run("tag", f"{host}/json/model:v1", "v2")["digest"] == pushed["digest"]
    removed = run("rm", f"{host}/json/copy:v1")
    assert removed["digest"] == pushed["digest"]
    users = run("admin users list", *data_dir)
    assert "admin" in {u["name"] for u in users}
    assert all(iso_time(u["created"]) for u in users)
    keys = run("admin keys list", *data_dir)
    assert keys and all(iso_time(k["created"]) for k in keys)
    events = run("admin audit", *data_dir, "--limit", "20")
    assert events and all(iso_time(e["at"]) for e in events)
    assert run("logout", host) == {"registry": host, "removed": True}

    mine = click.Group(commands={c.name: c for m in (serving, administration, transfers, charts,
                                                      bundles, browsing) for c in m.COMMANDS})
    assert commands_with_output(mine) == ran, "every --output json command is exercised here"


# ------------------------------------------------------------------------ file modes

@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_pulled_files_get_ordinary_modes(server: RegistryProcess, tmp_path: Path, umask: int,
                                         expected: int) -> None:
    """Like `oras pull`: what open() would create under the umask, not a temp file's 0600."""
    host = server.host
    cli = logged_in(server, tmp_path)
    write_files(tmp_path, {"m.txt": "mode", "chart/Chart.yaml":
                           "apiVersion: v2\nname: modes\nversion: 0.1.0\n",
                           "policy/p.rego": "package p\n"})
    cli("push", f"{host}/modes/file:v1", str(tmp_path / "m.txt"))
    cli("chart", "push", str(tmp_path / "chart"), f"{host}/modes")
    cli("bundle", "push", str(tmp_path / "policy"), f"{host}/modes/policy:1")
    previous = os.umask(umask)
    try:
        out = tmp_path / "out"
        cli("pull", f"{host}/modes/file:v1", "-o", str(out))
        cli("chart", "pull", f"{host}/modes/modes", "-o", str(out))
        cli("bundle", "pull", f"{host}/modes/policy:1", "-o", str(out))
    finally:
        os.umask(previous)
    for name in ("m.txt", "modes-0.1.0.tgz", "bundle.tar.gz"):
        assert stat.S_IMODE((out / name).stat().st_mode) == expected, name
