"""Bad input: each a one-line error with exit code 1 (2 for usage), and nothing written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest
import requests

from tests.clihelpers import (
    Cli,
    FaultyProxy,
    assert_one_line_error,
    host_of,
    shared_reference,
    snapshot,
    write_files,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(base: str, repo: str, data: bytes) -> dict:
    resp = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    url = location if location.startswith("http") else base + location
    url += ("&" if "?" in url else "?") + f"digest={sha256(data)}"
    put = requests.put(url, data=data, headers={"Content-Type": "application/octet-stream"},
                       timeout=30)
    assert put.status_code == 201, put.text
    return {"digest": sha256(data), "size": len(data)}


def push_crafted(base: str, repo: str, tag: str, layers: list[tuple[bytes, dict]]) -> None:
    """A manifest with hand-made layer annotations (titles a friendly client never writes)."""
    config = upload(base, repo, b"{}")
    descriptors = []
    for data, layer_annotations in layers:
        descriptors.append({"mediaType": layer_annotations.pop("_mt", "application/octet-stream"),
                            **upload(base, repo, data), "annotations": layer_annotations})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", **config},
                "layers": descriptors}
    resp = requests.put(f"{base}/v2/{repo}/manifests/{tag}", data=json.dumps(manifest),
                        headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("ref, needle", [
    ("myrepo:latest", "registry host"),
    ("docker.io", "missing repository"),
    ("127.0.0.1:5000/UpperCase:1", "invalid repository name"),
    ("127.0.0.1:5000/a/b:bad*tag", "invalid tag"),
    ("127.0.0.1:5000/a/b:-dash", "invalid tag"),
    ("127.0.0.1:5000/a/b@sha256:1234", "malformed digest"),
    ("127.0.0.1:5000/a/b@md5:" + "0" * 32, "unsupported digest algorithm"),
    ("127.0.0.1:99999/a/b:1", "bad port"),
    ("127.0.0.1:5000/a//b:1", "invalid repository name"),
    ("bad_host!.example/a:1", "bad registry host"),
    ("bad_host!/a:1", "not a registry host"),
    ("", "empty"),
])
def test_malformed_references(cli: Cli, ref: str, needle: str) -> None:
    for command in (["pull", ref], ["manifest", ref], ["tree", ref], ["rm", ref]):
        assert_one_line_error(cli(*command, expect=1), "invalid reference", needle)


def test_malformed_reference_in_a_real_process(cli: Cli, tmp_path: Path) -> None:
    out = cli.subprocess("pull", "no-registry-here/repo:1", "-o", str(tmp_path / "o"))
    assert_one_line_error(out, "invalid reference")
    assert not (tmp_path / "o").exists()
    usage = cli.subprocess("push")
    assert usage.exit_code == 2 and "Usage:" in usage.stderr
    choice = cli.subprocess("tags", "127.0.0.1:1/a", "--output", "xml")
    assert choice.exit_code == 2
    down = cli.subprocess("tags", "127.0.0.1:1/a")
    assert_one_line_error(down, "cannot connect to 127.0.0.1:1")


def test_missing_files(cli: Cli, registry_url: str, tmp_path: Path) -> None:
    host = host_of(registry_url)
    assert_one_line_error(cli("push", f"{host}/x/y:1", str(tmp_path / "nope.txt"), expect=1),
                          "does not exist", "nope.txt")
    write_files(tmp_path, {"ok.txt": "ok"})
    assert_one_line_error(cli("push", f"{host}/x/y:1", str(tmp_path / "ok.txt"), "--config",
                              str(tmp_path / "cfg.json"), expect=1), "does not exist")
    assert_one_line_error(cli("push", f"{host}/x/y:1", f"{tmp_path / 'ok.txt'}:not a type",
                              expect=1), "media type")
    assert_one_line_error(cli("push", f"{host}/x/y:1", str(tmp_path / "ok.txt"),
                              "--annotation", "novalue", expect=1), "key=value")
    assert_one_line_error(cli("bundle", "push", str(tmp_path / "nothing"), f"{host}/x/b:1",
                              expect=1), "does not exist")
    empty = tmp_path / "empty-bundle"
    write_files(empty, {"README.md": "no policies"})
    assert_one_line_error(cli("bundle", "push", str(empty), f"{host}/x/b:1", expect=1),
                          "no OPA bundle")
    assert_one_line_error(cli("pull", f"{host}/x/never-pushed:1", "-o", str(tmp_path / "o"),
                              expect=1), "not found")
    assert not (tmp_path / "o").exists()


def test_tampered_blob_in_reference_storage(cli: Cli, tmp_path: Path,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    server = shared_reference(tmp_path_factory)
    repo = f"tamper/{uuid.uuid4().hex[:8]}"
    write_files(tmp_path, {"good.txt": "good content\n", "victim.txt": "original bytes\n"})
    pushed = cli.json("push", f"{server.host}/{repo}:1", str(tmp_path / "good.txt"),
                      str(tmp_path / "victim.txt"))
    victim = pushed["layers"][1]["digest"]
    server.blob_path(victim).write_bytes(b"tampered bytes\n")  # same size, other content
    out = tmp_path / "out"
    result = cli("pull", f"{server.host}/{repo}:1", "-o", str(out), expect=1)
    assert_one_line_error(result, "failed verification", victim, "nothing written")
    assert not out.exists()  # not even the good layer
    existing = tmp_path / "existing"
    write_files(existing, {"keep.txt": "mine"})
    cli("pull", f"{server.host}/{repo}:1", "-o", str(existing), expect=1)
    assert snapshot(existing) == {"keep.txt"}


def test_tampered_blob_through_a_proxy(cli: Cli, registry_url: str, tmp_path: Path) -> None:
    proxy = FaultyProxy(registry_url).start()
    try:
        repo = f"tamper/{uuid.uuid4().hex[:8]}"
        write_files(tmp_path, {"a.bin": b"A" * 3000})
        cli("push", f"{proxy.host}/{repo}:1", str(tmp_path / "a.bin"))
        proxy.tamper_blobs = True
        out = tmp_path / "out"
        assert_one_line_error(cli("pull", f"{proxy.host}/{repo}:1", "-o", str(out), expect=1),
                              "failed verification")
        assert not out.exists()
        copy = cli("copy", f"{proxy.host}/{repo}:1", f"{host_of(registry_url)}/{repo}-c:1",
                   expect=1)
        assert_one_line_error(copy, "failed verification")
    finally:
        proxy.stop()


@pytest.mark.parametrize("title", ["../escape.txt", "/tmp/absolute.txt", "a/../../up.txt",
                                   "..", "sub/../../x"])
def test_title_escaping_the_output_folder(cli: Cli, registry_url: str, tmp_path: Path,
                                          title: str) -> None:
    repo = f"evil/{uuid.uuid4().hex[:8]}"
    push_crafted(registry_url, repo, "1", [(b"harmless", {"org.opencontainers.image.title":
                                                          "ok.txt"}),
                                           (b"payload", {"org.opencontainers.image.title":
                                                         title})])
    work = tmp_path / "work"
    out = work / "out"
    work.mkdir()
    before = snapshot(tmp_path)
    result = cli("pull", f"{host_of(registry_url)}/{repo}:1", "-o", str(out), expect=1)
    assert_one_line_error(result, "refusing")
    assert snapshot(tmp_path) == before
    assert not Path("/tmp/absolute.txt").exists() or title != "/tmp/absolute.txt"


def test_archive_member_escaping_the_output_folder(cli: Cli, registry_url: str,
                                                   tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("pkg/fine.txt", b"fine"), ("pkg/../../evil.txt", b"evil")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(buf.getvalue(), mtime=0)
    repo = f"evil/{uuid.uuid4().hex[:8]}"
    push_crafted(registry_url, repo, "1", [(layer, {
        "_mt": "application/vnd.oci.image.layer.v1.tar+gzip",
        "org.opencontainers.image.title": "pkg", "io.deis.oras.content.unpack": "true"})])
    out = tmp_path / "out"
    result = cli("pull", f"{host_of(registry_url)}/{repo}:1", "-o", str(out), expect=1)
    assert_one_line_error(result, "unsafe", "evil.txt")
    assert not out.exists() and not (tmp_path / "evil.txt").exists()


def test_duplicate_titles_and_digest_push(cli: Cli, registry_url: str, tmp_path: Path) -> None:
    host = host_of(registry_url)
    write_files(tmp_path, {"a/x.txt": "1", "b/x.txt": "2"})
    assert_one_line_error(cli("push", f"{host}/d/d:1", str(tmp_path / "a" / "x.txt"),
                              str(tmp_path / "b" / "x.txt"), expect=1), "x.txt")
    assert_one_line_error(cli("push", f"{host}/d/d@sha256:{'a' * 64}",
                              str(tmp_path / "a" / "x.txt"), expect=1), "digest")
