"""Interop: what `cargohold push` writes, oras and skopeo read identically, and the reverse."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from tests.clienthelpers import require_oras, run_skopeo
from tests.clihelpers import Cli, host_of, shared_reference, write_files

pytestmark = pytest.mark.clients


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo_raw(registry: str, repo: str, ref: str) -> bytes:
    sep = "@" if ":" in ref else ":"
    return run_skopeo("inspect", "--raw", "--tls-verify=false",
                      f"docker://{registry}/{repo}{sep}{ref}").stdout


def test_cargohold_push_read_by_oras_and_skopeo(cli: Cli, registry: str,
                                                tmp_path: Path) -> None:
    oras_client = require_oras()
    repo = f"interop/{uuid.uuid4().hex[:10]}"
    src = tmp_path / "src"
    write_files(src, {"report.json": '{"ok": true}\n', "docs/a.md": "# A\n", "docs/b.md": "B"})
    pushed = cli.json("push", f"{registry}/{repo}:v1",
                      f"{src / 'report.json'}:application/vnd.example.report+json",
                      str(src / "docs"), "--artifact-type", "application/vnd.example.bundle")

    raw = skopeo_raw(registry, repo, "v1")
    assert sha256(raw) == pushed["digest"]
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.example.bundle"
    assert [(d["mediaType"], d["digest"]) for d in manifest["layers"]] == [
        (layer["mediaType"], layer["digest"]) for layer in pushed["layers"]]
    assert raw == cli("manifest", f"{registry}/{repo}:v1", "--raw").raw

    client = oras_client.OrasClient(hostname=registry, insecure=True)
    outdir = tmp_path / "oras-out"
    client.pull(target=f"{registry}/{repo}:v1", outdir=str(outdir))
    assert (outdir / "report.json").read_text() == '{"ok": true}\n'
    assert (outdir / "docs" / "a.md").read_text() == "# A\n"
    assert (outdir / "docs" / "b.md").read_text() == "B"
    assert client.get_manifest(f"{registry}/{repo}:v1") == manifest


def test_oras_push_read_by_cargohold_and_skopeo(cli: Cli, registry: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    oras_client = require_oras()
    repo = f"interop/{uuid.uuid4().hex[:10]}"
    write_files(tmp_path, {"model.bin": b"\x01\x02" * 4000, "card.md": "# card\n",
                           "config.json": '{"kind":"model"}'})
    monkeypatch.chdir(tmp_path)  # oras wants relative paths inside the working folder
    client = oras_client.OrasClient(hostname=registry, insecure=True)
    client.push(target=f"{registry}/{repo}:m1",
                files=["model.bin:application/vnd.example.weights", "card.md"],
                manifest_config="config.json:application/vnd.example.model.config.v1+json",
                disable_path_validation=True)
    raw = skopeo_raw(registry, repo, "m1")
    desc = cli.json("manifest", f"{registry}/{repo}:m1", "--descriptor")
    assert desc["digest"] == sha256(raw)
    assert desc["mediaType"] == json.loads(raw)["mediaType"]
    out = tmp_path / "ours"
    pulled = cli.json("pull", f"{registry}/{repo}:m1", "-o", str(out))
    assert pulled["digest"] == sha256(raw)
    assert (out / "model.bin").read_bytes() == b"\x01\x02" * 4000
    assert (out / "card.md").read_text() == "# card\n"
    assert {f["mediaType"] for f in pulled["files"]} == {
        "application/vnd.example.weights", "application/vnd.oci.image.layer.v1.tar"}
    tree = cli.json("tree", f"{registry}/{repo}:m1")
    assert tree["config"]["mediaType"] == "application/vnd.example.model.config.v1+json"


def test_skopeo_image_copied_by_cargohold(cli: Cli, registry: str, registry_url: str,
                                          tmp_path: Path,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """A multi-arch image pushed with skopeo, copied to the other registry by `cargohold
    copy`, inspected by skopeo there: same index digest, same manifests."""
    from tests.clienthelpers import build_multiarch, write_multiarch_layout

    repo = f"interop/{uuid.uuid4().hex[:10]}"
    image = build_multiarch(uuid.uuid4().hex)
    layout = tmp_path / "layout"
    write_multiarch_layout(layout, image, "v1")
    run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{layout}:v1", f"docker://{registry}/{repo}:v1")
    other = (shared_reference(tmp_path_factory).host if registry == host_of(registry_url)
             else host_of(registry_url))
    copied = cli.json("copy", f"{registry}/{repo}:v1", f"{other}/{repo}:v1", "--recursive")
    assert copied["digest"] == image.index_digest
    assert sha256(skopeo_raw(other, repo, "v1")) == image.index_digest
    for platform_image in image.images:
        raw = skopeo_raw(other, repo, platform_image.manifest_digest)
        assert raw == platform_image.manifest
