"""Unit tests of the client library pieces, plus OPA bundle format and progress-bar behaviour."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from cargohold.client.auth import (
    Credentials,
    DockerConfig,
    merge_scopes,
    parse_challenges,
)
from cargohold.client.blobs import parse_range
from cargohold.client.errors import ClientError, InvalidReference, UnsafePath
from cargohold.client.files import safe_join
from cargohold.client.gojson import go_marshal
from cargohold.client.goyaml import go_format_float
from cargohold.client.helm import chart_metadata, highest_version, tag_for_version
from cargohold.client.helm_archive import HelmIgnore
from cargohold.client.reference import is_local_host, parse_reference
from tests.clihelpers import SHIM, Cli, host_of, write_files

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, host, repo, tag, digest", [
    ("localhost:5000/a/b:1", "localhost:5000", "a/b", "1", None),
    ("oci://registry.example.com/x", "registry.example.com", "x", None, None),
    (f"127.0.0.1:5000/a@{DIGEST}", "127.0.0.1:5000", "a", None, DIGEST),
    (f"r.io/a/b:t@{DIGEST}", "r.io", "a/b", "t", DIGEST),
    ("[::1]:5000/a_b/c-d:v1.0", "[::1]:5000", "a_b/c-d", "v1.0", None),
    ("localhost/a", "localhost", "a", None, None),
])
def test_parse_reference(text: str, host: str, repo: str, tag: str | None,
                         digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)
    assert ref.reference == (digest or tag)


def test_parse_reference_errors() -> None:
    for bad in ("a/b", "r.io/A", "r.io/a:" + "x" * 129, "r.io/a@sha256:zz", "r.io:0/a",
                "r.io/a b"):
        with pytest.raises(InvalidReference):
            parse_reference(bad)


def test_local_hosts_use_plain_http() -> None:
    assert all(is_local_host(h) for h in ("localhost:5000", "127.0.0.1:1", "127.1.2.3",
                                          "[::1]:5000", "localhost"))
    assert not any(is_local_host(h) for h in ("registry.example.com", "10.0.0.1:5000",
                                              "myhost:5000"))


def test_challenges() -> None:
    [bearer] = parse_challenges('Bearer realm="https://auth.example.com/token",'
                                'service="registry.example.com",'
                                'scope="repository:a/b:pull,push repository:c:pull"')
    assert bearer.scheme == "bearer" and bearer.realm == "https://auth.example.com/token"
    assert bearer.scopes == ["repository:a/b:pull,push", "repository:c:pull"]
    basic, other = parse_challenges('Basic realm="x, \\"y\\"", Newauth realm=apps, type=1')
    assert basic.params == {"realm": 'x, "y"'}
    assert other.scheme == "newauth" and other.params == {"realm": "apps", "type": "1"}
    assert merge_scopes(["repository:a:pull"], ["repository:a:push", "registry:catalog:*"]) \
        == ["repository:a:pull,push", "registry:catalog:*"]


def test_docker_config_round_trip(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "d" / "config.json")
    assert config.get("r.io").empty
    config.store("r.io", Credentials("u", "p:w"))
    config.store("other.io:5000", Credentials("x", "y"))
    assert config.get("r.io") == Credentials("u", "p:w")
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    assert config.erase("r.io") and not config.erase("r.io")
    assert config.get("other.io:5000").username == "x"
    (tmp_path / "d" / "config.json").write_text("{not json")
    with pytest.raises(ClientError, match="not valid JSON"):
        config.get("r.io")


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """credHelpers/credsStore name docker-credential-<helper> programs (get/store/erase)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "store.json"
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action, payload = sys.argv[1], sys.stdin.read()
if action == "store":
    item = json.loads(payload); data[item["ServerURL"]] = item
    json.dump(data, open(path, "w"))
elif action == "get":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(data[payload]))
elif action == "erase":
    data.pop(payload, None); json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"r.io": "fake"}}))
    config = DockerConfig(tmp_path / "config.json")
    assert config.store("r.io", Credentials("helper-user", "pw")) == "docker-credential-fake"
    assert config.get("r.io") == Credentials(username="helper-user", password="pw")
    assert "auths" not in json.loads((tmp_path / "config.json").read_text())
    assert config.erase("r.io")
    assert config.get("r.io").empty


def test_go_marshal_matches_go() -> None:
    assert go_marshal({"a": "x<y>&z\u2028", "b": ["é", 1, True]}) == \
        '{"a":"x\\u003cy\\u003e\\u0026z\\u2028","b":["é",1,true]}'.encode()
    assert [go_format_float(v) for v in (1.1, 100000.0, 1234567.0, 0.0001, 0.00001, 3.0)] == \
        ["1.1", "100000", "1.234567e+06", "0.0001", "1e-05", "3"]


def test_chart_metadata_rules() -> None:
    meta = chart_metadata("name: old\nversion: 1.0\nappVersion: 2\ndeprecated: true\n"
                          "description: |\n  two\n  lines\n",
                          "dependencies:\n- name: dep\n  repository: ''\n  enabled: true\n")
    assert meta.config_json() == (
        b'{"name":"old","version":"1","description":"two lines ","apiVersion":"v1",'
        b'"appVersion":"2","deprecated":true,'
        b'"dependencies":[{"name":"dep","repository":"","enabled":true}]}')
    for bad, message in (("version: 1.0.0\n", "no name"), ("name: x\n", "no version"),
                         ("name: x\nversion: 1\ntype: other\n", "application or library"),
                         ("name: ../x\nversion: 1\n", "not allowed"),
                         ("name: x\nversion: 1\nmaintainers: [~]\n", "empty or null")):
        with pytest.raises(ClientError, match=message):
            chart_metadata(bad)
    assert tag_for_version("1.0.0+abc") == "1.0.0_abc"
    assert highest_version(["0.9.0", "1.0.0_b2", "1.0.0-rc.1", "latest", "0.10.0"]) == \
        "1.0.0_b2"
    assert highest_version(["1.0.0-rc.1", "1.0.0-rc.2"]) == "1.0.0-rc.2"


def test_helmignore() -> None:
    rules = HelmIgnore("# comment\n*.bak\nsecrets/\n/docs/*.md\n")
    assert rules.ignored("a.bak", False) and rules.ignored("sub/b.bak", False)
    assert not rules.ignored("a.txt", False)
    assert rules.ignored("secrets", True) and not rules.ignored("secrets", False)
    assert rules.ignored("docs/x.md", False) and not rules.ignored("other/x.md", False)
    assert rules.ignored("templates/.hidden", False)


def test_safe_join(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.txt", "x") == tmp_path / "a" / "b.txt"
    for bad in ("../a", "/etc/passwd", "a/../../b", "", "..", "C:\\x", "a\\..\\..\\b"):
        with pytest.raises(UnsafePath):
            safe_join(tmp_path, bad, "x")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, "link/etc/passwd", "x")


def test_parse_range() -> None:
    assert parse_range("0-1023") == 1024 and parse_range("bytes=0-0") == 1
    assert parse_range(None) is None and parse_range("junk") is None


# ------------------------------------------------------------------------------ OPA bundles

def test_bundle_format(tmp_path: Path, registry_url: str) -> None:
    host = host_of(registry_url)
    cli = Cli(tmp_path / "dc")
    src = tmp_path / "policy"
    write_files(src, {".manifest": '{"roots":["authz"],"revision":"r9"}',
                      "authz/allow.rego": "package authz\n", "authz/allow_test.rego": "package x\n",
                      "authz/data.json": "{}", "authz/data.yaml": "a: 1\n",
                      ".git/config": "x", "README.md": "docs"})
    repo = f"opa/{uuid.uuid4().hex[:8]}"
    pushed = cli.json("bundle", "push", str(src), f"{host}/{repo}:1")
    assert pushed["config"]["mediaType"] == "application/vnd.cncf.openpolicyagent.config.v1+json"
    assert pushed["layers"][0]["mediaType"] == \
        "application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip"
    assert pushed["layers"][0]["annotations"] == {"org.opencontainers.image.title":
                                                  "bundle.tar.gz"}
    assert pushed["files"] == ["/.manifest", "/authz/allow.rego", "/authz/allow_test.rego",
                               "/authz/data.json", "/authz/data.yaml"]
    out = tmp_path / "out"
    cli("bundle", "pull", f"{host}/{repo}:1", "-o", str(out))
    with tarfile.open(out / "bundle.tar.gz") as tar:
        assert tar.getnames() == pushed["files"]  # leading '/' as `opa build` writes them
    config = json.loads(cli.json("tree", f"{host}/{repo}:1")["config"]["digest"] and
                        cli("manifest", f"{host}/{repo}:1").stdout)["config"]
    assert config["mediaType"] == "application/vnd.cncf.openpolicyagent.config.v1+json"
    # a prebuilt bundle.tar.gz is pushed as is; --oci-layer selects the type OPA's own
    # OCI downloader looks for
    again = cli.json("bundle", "push", str(out / "bundle.tar.gz"), f"{host}/{repo}:2",
                     "--oci-layer")
    assert again["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert again["layers"][0]["digest"] == pushed["layers"][0]["digest"]
    assert again["config"]["digest"] == pushed["config"]["digest"]
    cli("bundle", "pull", f"{host}/{repo}:2", "-o", str(tmp_path / "x"), "--extract")
    assert (tmp_path / "x" / "authz" / "allow.rego").read_text() == "package authz\n"
    bad = tmp_path / "bad"
    write_files(bad, {"p.rego": "package p\n", "data.json": "{oops"})
    out_bad = cli("bundle", "push", str(bad), f"{host}/{repo}:3", expect=1)
    assert "not valid JSON" in out_bad.stderr


# ------------------------------------------------------------------------------ progress

def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60.0) -> str:
    """Run with stderr on a pseudo-terminal; returns what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SHIM, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(tmp_path: Path, registry_url: str) -> None:
    host = host_of(registry_url)
    write_files(tmp_path, {"p.bin": os.urandom(200_000)})
    cli = Cli(tmp_path / "dc")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "dc"), "COLUMNS": "120",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    shown = run_in_pty(["push", f"{host}/progress/p:1", str(tmp_path / "p.bin")], env)
    assert "p.bin" in shown and "kB" in shown and "uploaded" in shown
    piped = cli.subprocess("push", f"{host}/progress/p:2", str(tmp_path / "p.bin"))
    assert piped.exit_code == 0 and piped.stderr == ""
    quiet = run_in_pty(["push", f"{host}/progress/p:3", str(tmp_path / "p.bin"),
                        "--no-progress"], env)
    assert "p.bin" not in quiet
