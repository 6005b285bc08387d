"""Round trips of every client command against Cargohold AND the CNCF reference registry."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import requests

from tests.clihelpers import Cli, host_of, shared_reference, snapshot, write_files

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def repo() -> str:
    return f"cli/{uuid.uuid4().hex[:12]}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_push_pull_files_and_folder(cli: Cli, registry: str, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_files(src, {"hello.txt": "hello world\n", "model/weights.bin": b"\x00\x01" * 5000,
                      "model/nested/readme.md": "# model\n"})
    pushed = cli.json("push", f"{registry}/{repo}:v1", str(src / "hello.txt"),
                      f"{src / 'model'}:application/vnd.example.model.v1.tar+gzip",
                      "--annotation", "org.example.owner=team-a", "--no-progress")
    assert pushed["reference"] == f"{registry}/{repo}:v1"
    assert [layer["annotations"]["org.opencontainers.image.title"]
            for layer in pushed["layers"]] == ["hello.txt", "model"]
    assert pushed["layers"][1]["mediaType"] == "application/vnd.example.model.v1.tar+gzip"
    assert all(layer["upload"] == "uploaded" for layer in pushed["layers"])

    out = tmp_path / "out"
    pulled = cli.json("pull", f"{registry}/{repo}:v1", "-o", str(out))
    assert pulled["digest"] == pushed["digest"]
    assert (out / "hello.txt").read_text() == "hello world\n"
    assert (out / "model" / "weights.bin").read_bytes() == b"\x00\x01" * 5000
    assert (out / "model" / "nested" / "readme.md").read_text() == "# model\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".cargohold")]

    # --media-type filters layers
    only = tmp_path / "only"
    cli("pull", f"{registry}/{repo}:v1", "-o", str(only), "--media-type",
        "application/vnd.oci.image.layer.v1.tar")
    assert snapshot(only) == {"hello.txt"}

    # the manifest as stored: raw bytes hash to the digest; pretty JSON parses to the same
    raw = cli("manifest", f"{registry}/{repo}:v1", "--raw").raw
    assert sha256(raw) == pushed["digest"]
    pretty = json.loads(cli("manifest", f"{registry}/{repo}:v1").stdout)
    assert pretty == json.loads(raw)
    assert pretty["annotations"] == {"org.example.owner": "team-a"}
    assert pretty["artifactType"] == "application/vnd.unknown.artifact.v1"
    described = cli.json("manifest", f"{registry}/{repo}@{pushed['digest']}", "--descriptor")
    assert described == {"mediaType": OCI_MANIFEST, "digest": pushed["digest"],
                         "size": len(raw)}

    # a second push finds every blob already there
    again = cli.json("push", f"{registry}/{repo}:v1", str(src / "hello.txt"))
    assert again["layers"][0]["upload"] == "exists"


def test_push_with_config_and_artifact_type(cli: Cli, registry: str, repo: str,
                                            tmp_path: Path) -> None:
    write_files(tmp_path, {"cfg.json": '{"x":1}', "data.csv": "a,b\n1,2\n"})
    pushed = cli.json("push", f"{registry}/{repo}:cfg",
                      f"{tmp_path / 'data.csv'}:text/csv",
                      "--config", f"{tmp_path / 'cfg.json'}:application/vnd.example.config+json",
                      "--artifact-type", "application/vnd.example.dataset.v1")
    manifest = cli.json("manifest", f"{registry}/{repo}:cfg")["manifest"]
    assert manifest["artifactType"] == "application/vnd.example.dataset.v1"
    assert manifest["config"] == {"mediaType": "application/vnd.example.config+json",
                                  "digest": sha256(b'{"x":1}'), "size": 7}
    assert manifest["layers"][0]["mediaType"] == "text/csv"
    assert pushed["artifactType"] == "application/vnd.example.dataset.v1"

    # oras-style annotation file: manifest, config and per-file annotations
    (tmp_path / "ann.json").write_text(json.dumps({
        "$manifest": {"org.example.release": "r1"}, "$config": {"org.example.cfg": "c"},
        "data.csv": {"org.example.rows": "2"}}))
    cli("push", f"{registry}/{repo}:ann", str(tmp_path / "data.csv"), "--annotation-file",
        str(tmp_path / "ann.json"), "-a", "org.example.extra=x")
    annotated = cli.json("manifest", f"{registry}/{repo}:ann")["manifest"]
    assert annotated["annotations"] == {"org.example.release": "r1", "org.example.extra": "x"}
    assert annotated["config"]["annotations"] == {"org.example.cfg": "c"}
    assert annotated["layers"][0]["annotations"] == {
        "org.opencontainers.image.title": "data.csv", "org.example.rows": "2"}


def test_tags_tag_repos_rm(cli: Cli, registry: str, repo: str, tmp_path: Path) -> None:
    write_files(tmp_path, {"f.txt": "content"})
    pushed = cli.json("push", f"{registry}/{repo}:one", str(tmp_path / "f.txt"))
    tagged = cli.json("tag", f"{registry}/{repo}:one", "two", "three")
    assert tagged["digest"] == pushed["digest"]
    listing = cli.json("tags", f"{registry}/{repo}")
    assert sorted(listing["tags"]) == ["one", "three", "two"]
    assert sorted(cli("tags", f"{registry}/{repo}").stdout.split()) == ["one", "three", "two"]
    repos = cli.json("repos", registry)["repositories"]
    assert repo in repos

    deleted = cli.json("rm", f"{registry}/{repo}:two")
    assert deleted["digest"] == pushed["digest"]
    # deleting the manifest takes every tag pointing at it along
    gone = cli("manifest", f"{registry}/{repo}:one", expect=1)
    assert "not found" in gone.stderr
    missing = cli("rm", f"{registry}/{repo}:two", expect=1)
    assert "not found" in missing.stderr
    forced = cli.json("rm", f"{registry}/{repo}:two", "--force")
    assert forced["deleted"] is False


def test_images_through_v2(cli: Cli, registry: str, repo: str, tmp_path: Path) -> None:
    write_files(tmp_path, {"a.txt": "a", "sig.json": '{"sig":true}', "chart.json": "{}"})
    first = cli.json("push", f"{registry}/{repo}:a", str(tmp_path / "a.txt"),
                     "--artifact-type", "application/vnd.example.thing")
    cli("tag", f"{registry}/{repo}:a", "a2")
    sig = cli.json("push", f"{registry}/{repo}", str(tmp_path / "sig.json"),
                   "--artifact-type", "application/vnd.dev.cosign.artifact.sig.v1+json",
                   "--subject", first["digest"])
    tagged = cli.json("images", f"{registry}/{repo}", "--tag-status", "tagged")
    assert tagged["source"] == "v2"
    [image] = tagged["imageDetails"]
    assert image["imageDigest"] == first["digest"]
    assert image["imageTags"] == ["a", "a2"]
    assert image["artifactMediaType"] == "application/vnd.example.thing"
    assert image["imageManifestMediaType"] == OCI_MANIFEST
    assert image["imageSizeInBytes"] == 2 + 1  # empty config + one-byte layer

    untagged = cli.json("images", f"{registry}/{repo}", "--tag-status", "untagged")
    assert [d["imageDigest"] for d in untagged["imageDetails"]] == [sig["digest"]]
    everything = cli.json("images", f"{registry}/{repo}")
    assert {d["imageDigest"] for d in everything["imageDetails"]} == {first["digest"],
                                                                      sig["digest"]}
    filtered = cli.json("images", f"{registry}/{repo}", "--artifact-type",
                        "application/vnd.dev.cosign.artifact.sig.v1+json")
    assert [d["imageDigest"] for d in filtered["imageDetails"]] == [sig["digest"]]
    table = cli("images", f"{registry}/{repo}").stdout
    assert "signature (cosign)" in table and "a,a2" in table


def test_referrers_and_tree(cli: Cli, registry: str, repo: str, tmp_path: Path) -> None:
    write_files(tmp_path, {"app.bin": b"\x7fELF" + b"x" * 100, "sbom.json": '{"spdx":1}',
                           "sig.json": '{"sig":1}', "sbom-sig.json": '{"sig":2}'})
    subject = cli.json("push", f"{registry}/{repo}:app", str(tmp_path / "app.bin"),
                       "--artifact-type", "application/vnd.example.app")
    sbom = cli.json("push", f"{registry}/{repo}", str(tmp_path / "sbom.json"),
                    "--artifact-type", "application/spdx+json",
                    "--subject", f"{registry}/{repo}:app",
                    "--annotation", "org.example.kind=sbom")
    assert sbom["subject"] == subject["digest"]
    sig = cli.json("push", f"{registry}/{repo}", str(tmp_path / "sig.json"),
                   "--artifact-type", "application/vnd.dev.cosign.artifact.sig.v1+json",
                   "--subject", subject["digest"])
    nested = cli.json("push", f"{registry}/{repo}", str(tmp_path / "sbom-sig.json"),
                      "--artifact-type", "application/vnd.cncf.notary.signature",
                      "--subject", sbom["digest"])

    graph = cli.json("tree", f"{registry}/{repo}:app")
    assert graph["digest"] == subject["digest"]
    assert graph["friendlyType"] == "artifact"
    referrers = {r["digest"]: r for r in graph["referrers"]}
    assert set(referrers) == {sbom["digest"], sig["digest"]}
    assert referrers[sbom["digest"]]["friendlyType"] == "SBOM (SPDX)"
    assert referrers[sig["digest"]]["friendlyType"] == "signature (cosign)"
    assert [r["digest"] for r in referrers[sbom["digest"]]["referrers"]] == [nested["digest"]]
    assert referrers[sbom["digest"]]["referrers"][0]["friendlyType"] == "signature (Notary)"
    layer = graph["layers"][0]
    assert layer["title"] == "app.bin" and layer["size"] == 104

    text = cli("tree", f"{registry}/{repo}:app").stdout
    assert f"{registry}/{repo}:app" in text.splitlines()[0]
    assert "SBOM (SPDX) [application/spdx+json]" in text
    assert "signature (Notary) [application/vnd.cncf.notary.signature]" in text
    assert "referrers" in text and "app.bin" in text
    bare = cli.json("tree", f"{registry}/{repo}:app", "--no-referrers")
    assert "referrers" not in bare


def test_copy_within_and_across_registries(cli: Cli, registry: str, repo: str,
                                           registry_url: str, tmp_path: Path,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    write_files(tmp_path, {"payload.bin": b"p" * 70_000, "sig.json": '{"s":1}'})
    src = cli.json("push", f"{registry}/{repo}:v1", str(tmp_path / "payload.bin"))
    sig = cli.json("push", f"{registry}/{repo}", str(tmp_path / "sig.json"),
                   "--artifact-type", "application/vnd.dev.cosign.artifact.sig.v1+json",
                   "--subject", src["digest"])

    # same registry, other repository: blobs are mounted, not re-sent
    same = cli.json("copy", f"{registry}/{repo}:v1", f"{registry}/{repo}-copy")
    assert same["digest"] == src["digest"]
    assert same["destination"] == f"{registry}/{repo}-copy:v1"
    assert set(same["blobs"]) <= {"mounted", "exists"} and same["blobs"].get("mounted")
    assert same["referrers"] == 0

    # across registries, with referrers
    other = (shared_reference(tmp_path_factory).host if registry == host_of(registry_url)
             else host_of(registry_url))
    across = cli.json("copy", f"{registry}/{repo}:v1", f"{other}/{repo}:copied", "-r")
    assert across["digest"] == src["digest"] and across["referrers"] == 1
    assert across["blobs"].get("copied", 0) >= 1
    graph = cli.json("tree", f"{other}/{repo}:copied")
    assert [r["digest"] for r in graph["referrers"]] == [sig["digest"]]
    out = tmp_path / "out"
    cli("pull", f"{other}/{repo}:copied", "-o", str(out))
    assert (out / "payload.bin").read_bytes() == b"p" * 70_000


def test_copy_multiplatform_index(cli: Cli, registry: str, repo: str, tmp_path: Path) -> None:
    from tests.clienthelpers import build_multiarch, push_image, push_manifest

    base = f"http://{registry}"
    image = build_multiarch(uuid.uuid4().hex)
    for platform_image in image.images:
        push_image(base, repo, platform_image)
    push_manifest(base, repo, "multi", image.index,
                  media_type="application/vnd.oci.image.index.v1+json")

    graph = cli.json("tree", f"{registry}/{repo}:multi", "--no-referrers")
    assert graph["kind"] == "index" and graph["friendlyType"] == "multi-platform index"
    assert [m["platform"] for m in graph["manifests"]] == ["linux/amd64", "linux/arm64/v8"]
    assert all(m["friendlyType"] == "container image" for m in graph["manifests"])
    assert all(len(m["layers"]) == 2 for m in graph["manifests"])

    copied = cli.json("copy", f"{registry}/{repo}:multi", f"{registry}/{repo}-all:multi",
                      "--recursive")
    assert copied["digest"] == image.index_digest and copied["manifests"] == 2
    one = cli.json("copy", f"{registry}/{repo}:multi", f"{registry}/{repo}-arm:arm",
                   "--platform", "linux/arm64")
    assert one["digest"] == image.image_for("arm64").manifest_digest
    arm = cli.json("manifest", f"{registry}/{repo}:multi", "--platform", "linux/arm64")
    assert arm["digest"] == image.image_for("arm64").manifest_digest
    refused = cli("pull", f"{registry}/{repo}:multi", "-o", str(tmp_path / "x"), expect=1)
    assert "--platform" in refused.stderr
    resp = requests.get(f"{base}/v2/{repo}-all/manifests/{image.images[0].manifest_digest}",
                        headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert resp.status_code == 200 and resp.content == image.images[0].manifest


def test_chart_and_bundle_round_trip(cli: Cli, registry: str, repo: str,
                                     tmp_path: Path) -> None:
    chart = tmp_path / "demo"
    write_files(chart, {
        "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.2.3+meta.4\n"
                      "description: Demo chart\nappVersion: \"2.0\"\n",
        "values.yaml": "replicas: 1\n",
        "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    })
    pushed = cli.json("chart", "push", str(chart), f"{registry}/{repo}")
    assert pushed["reference"] == f"{registry}/{repo}/demo:1.2.3_meta.4"
    out = tmp_path / "charts"
    pulled = cli.json("chart", "pull", f"{registry}/{repo}/demo", "-o", str(out))
    assert pulled["version"] == "1.2.3+meta.4"
    assert (out / "demo-1.2.3+meta.4.tgz").is_file()
    untar = tmp_path / "untar"
    cli("chart", "pull", f"{registry}/{repo}/demo", "--version", "1.2.3+meta.4", "-o",
        str(untar), "--untar")
    assert (untar / "demo" / "Chart.yaml").is_file()
    assert (untar / "demo" / "templates" / "cm.yaml").is_file()

    bundle = tmp_path / "bundle"
    write_files(bundle, {".manifest": '{"revision":"7","roots":["authz"]}',
                         "authz/policy.rego": "package authz\n\ndefault allow := false\n",
                         "authz/data.json": '{"admins":["alice"]}', "notes.txt": "ignored"})
    cli.json("bundle", "push", str(bundle), f"{registry}/{repo}-opa:7")
    got = cli.json("bundle", "pull", f"{registry}/{repo}-opa:7", "-o",
                   str(tmp_path / "b"), "--extract")
    assert sorted(got["files"]) == [".manifest", "authz/data.json", "authz/policy.rego"]
    assert (tmp_path / "b" / "authz" / "policy.rego").read_text().startswith("package authz")
