"""login/logout and the Basic/Bearer challenges, sharing the Docker config with other tools."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from tests.clihelpers import Cli, assert_one_line_error, shared_reference, write_files

USERS = {"alice": "s3cret-pass", "bob": "other"}


@pytest.fixture
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The reference registry behind htpasswd (bcrypt) Basic auth."""
    return shared_reference(tmp_path_factory, USERS).host


def stored(cli: Cli) -> dict:
    return json.loads((cli.docker_config / "config.json").read_text())


def test_basic_login_push_pull_logout(cli: Cli, basic_registry: str, tmp_path: Path) -> None:
    repo = f"auth/{uuid.uuid4().hex[:10]}"
    write_files(tmp_path, {"f.txt": "secret data"})
    denied = cli("push", f"{basic_registry}/{repo}:1", str(tmp_path / "f.txt"), expect=1)
    assert_one_line_error(denied, "authentication required", f"cargohold login {basic_registry}")

    wrong = cli("login", basic_registry, "-u", "alice", "--password-stdin", input="nope\n",
                expect=1)
    assert_one_line_error(wrong, "login", "rejected")
    assert not (cli.docker_config / "config.json").exists()

    result = cli.json("login", basic_registry, "-u", "alice", "--password-stdin",
                      input="s3cret-pass\n")
    assert result["registry"] == basic_registry
    entry = stored(cli)["auths"][basic_registry]
    assert base64.b64decode(entry["auth"]).decode() == "alice:s3cret-pass"
    assert (cli.docker_config / "config.json").stat().st_mode & 0o777 == 0o600

    cli("push", f"{basic_registry}/{repo}:1", str(tmp_path / "f.txt"))
    cli("pull", f"{basic_registry}/{repo}:1", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "f.txt").read_text() == "secret data"
    assert repo in cli.json("repos", basic_registry)["repositories"]

    out = cli.json("logout", basic_registry)
    assert out["removed"] is True
    assert basic_registry not in stored(cli)["auths"]
    assert "Not logged in" in cli("logout", basic_registry).stdout
    cli("tags", f"{basic_registry}/{repo}", expect=1)


def test_reads_logins_other_tools_stored(cli: Cli, basic_registry: str, tmp_path: Path) -> None:
    """A config.json written by docker/skopeo/helm (with scheme-prefixed keys and other
    settings) is read as is, and a login keeps everything else in it."""
    cli.docker_config.mkdir(parents=True)
    token = base64.b64encode(b"bob:other").decode()
    (cli.docker_config / "config.json").write_text(json.dumps({
        "auths": {f"http://{basic_registry}/v2/": {"auth": token},
                  "registry.example.com": {"auth": "eDp5"}},
        "psFormat": "table {{.ID}}", "HttpHeaders": {"User-Agent": "docker"}}))
    repo = f"auth/{uuid.uuid4().hex[:10]}"
    write_files(tmp_path, {"g.txt": "g"})
    cli("push", f"{basic_registry}/{repo}:1", str(tmp_path / "g.txt"))
    cli("login", basic_registry, "-u", "alice", "-p", "s3cret-pass")
    data = stored(cli)
    assert data["psFormat"] == "table {{.ID}}" and data["HttpHeaders"]
    assert "registry.example.com" in data["auths"]
    assert list(k for k in data["auths"] if basic_registry in k) == [basic_registry]


def test_skopeo_uses_the_same_login(cli: Cli, basic_registry: str,
                                            tmp_path: Path) -> None:
    from tests.clienthelpers import run_skopeo

    repo = f"auth/{uuid.uuid4().hex[:10]}"
    write_files(tmp_path, {"h.txt": "shared login"})
    cli("login", basic_registry, "-u", "alice", "--password-stdin", input="s3cret-pass")
    pushed = cli.json("push", f"{basic_registry}/{repo}:1", str(tmp_path / "h.txt"))
    authfile = str(cli.docker_config / "config.json")
    raw = run_skopeo("inspect", "--raw", "--tls-verify=false", "--authfile", authfile,
                     f"docker://{basic_registry}/{repo}:1").stdout
    assert json.loads(raw)["layers"][0]["digest"] == pushed["layers"][0]["digest"]



def test_bearer_token_flow_against_cargohold(make_registry, tmp_path: Path) -> None:
    """Cargohold with access control answers Bearer challenges; the CLI fetches scoped tokens
    from the realm with the stored credentials and caches them."""
    server = make_registry(anonymous=False)
    key, secret = server.admin_credentials
    cli = Cli(tmp_path / "dc")
    repo = f"bearer/{uuid.uuid4().hex[:10]}"
    write_files(tmp_path, {"b.txt": "bearer"})
    denied = cli("push", f"{server.host}/{repo}:1", str(tmp_path / "b.txt"), expect=1)
    assert_one_line_error(denied)
    bad = cli("login", server.host, "-u", key, "--password-stdin", input="wrong", expect=1)
    assert_one_line_error(bad, "rejected")
    cli("login", server.host, "-u", key, "--password-stdin", input=secret)
    pushed = cli.json("push", f"{server.host}/{repo}:1", str(tmp_path / "b.txt"))
    cli("tag", f"{server.host}/{repo}:1", "2")
    assert sorted(cli.json("tags", f"{server.host}/{repo}")["tags"]) == ["1", "2"]
    assert cli.json("tree", f"{server.host}/{repo}:2")["digest"] == pushed["digest"]
    cli("pull", f"{server.host}/{repo}:2", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "b.txt").read_text() == "bearer"
    cli("rm", f"{server.host}/{repo}:1")


def test_login_usage_errors(cli: Cli, basic_registry: str) -> None:
    assert cli("login", basic_registry, "--password-stdin", input="x", expect=2).exit_code == 2
    assert cli("login", basic_registry, "-u", "a", "-p", "b", "--password-stdin", input="x",
               expect=2).exit_code == 2
    bad = cli("login", "not a host", "-u", "a", "-p", "b", expect=1)
    assert_one_line_error(bad, "invalid")
