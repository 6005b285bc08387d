"""skopeo (containers/image) against the registry: multi-arch push, list, inspect, pull back,
cross-repository copy (blob mount) and delete."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from clienthelpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    MultiArchImage,
    assert_tag_list,
    build_image,
    build_multiarch,
    describe,
    docker_ref,
    get_blob,
    get_manifest,
    layout_blob_digests,
    layout_ref_descriptor,
    list_tags,
    read_layout_blob,
    require_skopeo,
    run_skopeo,
    sha256_digest,
    write_multiarch_layout,
    write_oci_layout,
)

pytestmark = pytest.mark.clients

PUSH = ("copy", "--all", "--preserve-digests", "--dest-tls-verify=false")
PULL = ("copy", "--all", "--preserve-digests", "--src-tls-verify=false")
REMOTE = "--tls-verify=false"


@dataclass
class Pushed:
    registry_url: str
    repo: str
    image: MultiArchImage
    tags: tuple[str, ...]


def skopeo_push_multiarch(registry_url: str, repo: str, image: MultiArchImage, tag: str,
                          workdir: Path) -> None:
    layout = workdir / f"src-{uuid.uuid4().hex[:8]}"
    write_multiarch_layout(layout, image, "v1")
    digestfile = workdir / f"digest-{uuid.uuid4().hex[:8]}"
    run_skopeo(*PUSH, "--digestfile", str(digestfile), f"oci:{layout}:v1",
               docker_ref(registry_url, repo, tag))
    assert digestfile.read_text().strip() == image.index_digest, \
        "skopeo reports a different digest for the pushed index than the source index"


def assert_repo_holds(registry_url: str, repo: str, image: MultiArchImage, tag: str) -> None:
    """Over plain HTTP: the tag resolves to the exact index and every object is byte-exact."""
    resp = get_manifest(registry_url, repo, tag)
    assert resp.status_code == 200, describe(resp)
    assert resp.content == image.index, "index bytes changed in the registry"
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_INDEX, describe(resp)
    assert resp.headers.get("Docker-Content-Digest") == image.index_digest, describe(resp)
    for sub in image.images:
        resp = get_manifest(registry_url, repo, sub.manifest_digest)
        assert resp.status_code == 200, describe(resp)
        assert resp.content == sub.manifest
        assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_MANIFEST
        for digest, data in sub.blobs.items():
            blob = get_blob(registry_url, repo, digest)
            assert blob.status_code == 200, describe(blob)
            assert sha256_digest(blob.content) == digest
            assert blob.content == data


@pytest.fixture(scope="module")
def pushed(registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """One multi-arch image pushed by skopeo under two tags, shared by the read-only tests."""
    require_skopeo()
    repo = f"test/skopeo-{uuid.uuid4().hex[:10]}"
    image = build_multiarch(uuid.uuid4().hex)
    workdir = tmp_path_factory.mktemp("skopeo-push")
    tags = ("v1", "latest")
    for tag in tags:
        skopeo_push_multiarch(registry_url, repo, image, tag, workdir)
    return Pushed(registry_url, repo, image, tags)


def test_push_multiarch_stores_exact_content(pushed: Pushed) -> None:
    for tag in pushed.tags:
        assert_repo_holds(pushed.registry_url, pushed.repo, pushed.image, tag)


def test_list_tags(pushed: Pushed) -> None:
    out = run_skopeo("list-tags", REMOTE,
                     f"docker://{pushed.registry_url.split('://', 1)[1]}/{pushed.repo}")
    listing = json.loads(out.stdout)
    assert listing["Repository"].endswith(pushed.repo)
    assert sorted(listing["Tags"]) == sorted(pushed.tags)
    # The same over plain HTTP, where the spec requires lexical order.
    resp = list_tags(pushed.registry_url, pushed.repo)
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body["name"] == pushed.repo
    assert_tag_list(body["tags"], list(pushed.tags))


def test_inspect_raw_returns_exact_index(pushed: Pushed) -> None:
    image = pushed.image
    for ref in (*pushed.tags, image.index_digest):
        out = run_skopeo("inspect", "--raw", REMOTE, docker_ref(pushed.registry_url,
                                                                pushed.repo, ref))
        assert out.stdout == image.index, f"inspect --raw {ref} differs from the pushed index"
        assert sha256_digest(out.stdout) == image.index_digest
    for sub in image.images:
        out = run_skopeo("inspect", "--raw", REMOTE,
                         docker_ref(pushed.registry_url, pushed.repo, sub.manifest_digest))
        assert out.stdout == sub.manifest


@pytest.mark.parametrize(("arch", "variant"), [("amd64", None), ("arm64", "v8")])
def test_inspect_resolves_platform(pushed: Pushed, arch: str, variant: str | None) -> None:
    sub = pushed.image.image_for(arch)
    platform = ["--override-os", "linux", "--override-arch", arch]
    if variant:
        platform += ["--override-variant", variant]
    ref = docker_ref(pushed.registry_url, pushed.repo, "v1")
    info = json.loads(run_skopeo(*platform, "inspect", REMOTE, ref).stdout)
    # skopeo reports the digest of what the reference resolves to (the index) and the
    # platform-specific details of the manifest it picked from it.
    assert info["Digest"] == pushed.image.index_digest
    assert sorted(info["RepoTags"]) == sorted(pushed.tags)
    assert info["Architecture"] == arch
    assert info["Os"] == "linux"
    assert info["Layers"] == [sha256_digest(layer) for layer in sub.layers]
    assert info["Labels"] == json.loads(sub.config)["config"]["Labels"]
    config = run_skopeo(*platform, "inspect", "--config", "--raw", REMOTE, ref).stdout
    assert config == sub.config


def test_copy_back_to_oci_layout_is_byte_identical(pushed: Pushed, tmp_path: Path) -> None:
    image = pushed.image
    out = tmp_path / "out"
    run_skopeo(*PULL, docker_ref(pushed.registry_url, pushed.repo, "v1"), f"oci:{out}:copied")
    root = layout_ref_descriptor(out, "copied")
    assert root["digest"] == image.index_digest
    assert root["mediaType"] == OCI_INDEX
    assert root["size"] == len(image.index)
    expected = image.all_blobs
    assert layout_blob_digests(out) == set(expected)
    for digest, data in expected.items():
        got = read_layout_blob(out, digest)
        assert sha256_digest(got) == digest
        assert got == data


def test_push_docker_v2s2_conversion(registry_url: str, repo: str, tmp_path: Path) -> None:
    """skopeo converts an OCI image to Docker schema 2 on the way in; the registry must
    serve that manifest with its Docker media type and the unchanged blobs."""
    image = build_image("amd64", nonce=uuid.uuid4().hex)
    layout = tmp_path / "single"
    write_oci_layout(layout, {**image.blobs}, image.manifest, OCI_MANIFEST, "one")
    run_skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{layout}:one",
               docker_ref(registry_url, repo, "docker"))
    raw = run_skopeo("inspect", "--raw", REMOTE, docker_ref(registry_url, repo, "docker")).stdout
    manifest = json.loads(raw)
    docker_v2 = "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["mediaType"] == docker_v2
    assert manifest["config"]["digest"] == sha256_digest(image.config)
    assert [layer["digest"] for layer in manifest["layers"]] == \
        [sha256_digest(layer) for layer in image.layers]
    resp = get_manifest(registry_url, repo, "docker", accept=docker_v2)
    assert resp.status_code == 200, describe(resp)
    assert resp.content == raw
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == docker_v2
    assert resp.headers.get("Docker-Content-Digest") == sha256_digest(raw)


def test_copy_between_repositories(registry_url: str, tmp_path: Path) -> None:
    """docker:// -> docker:// inside one registry; skopeo tries a cross-repository blob mount
    (POST ?mount=&from=) for blobs it knows live in the source repository."""
    require_skopeo()
    base = f"test/{uuid.uuid4().hex[:10]}"
    source, target = f"{base}/source", f"{base}/target"
    image = build_multiarch(uuid.uuid4().hex)
    skopeo_push_multiarch(registry_url, source, image, "v1", tmp_path)
    run_skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
               "--dest-tls-verify=false", docker_ref(registry_url, source, "v1"),
               docker_ref(registry_url, target, "copied"))
    assert_repo_holds(registry_url, target, image, "copied")
    out = run_skopeo("inspect", "--raw", REMOTE, docker_ref(registry_url, target, "copied"))
    assert out.stdout == image.index

    # Deleting the source must not take the (possibly mounted) blobs away from the target.
    run_skopeo("delete", REMOTE, docker_ref(registry_url, source, "v1"))
    gone = get_manifest(registry_url, source, "v1")
    assert gone.status_code == 404, describe(gone)
    assert_repo_holds(registry_url, target, image, "copied")


def test_delete(registry_url: str, repo: str, tmp_path: Path) -> None:
    image = build_multiarch(uuid.uuid4().hex)
    skopeo_push_multiarch(registry_url, repo, image, "doomed", tmp_path)
    other = build_multiarch(uuid.uuid4().hex)
    skopeo_push_multiarch(registry_url, repo, other, "keeper", tmp_path)

    run_skopeo("delete", REMOTE, docker_ref(registry_url, repo, "doomed"))

    for ref in ("doomed", image.index_digest):
        resp = get_manifest(registry_url, repo, ref)
        assert resp.status_code == 404, describe(resp)
    failed = run_skopeo("inspect", "--raw", REMOTE, docker_ref(registry_url, repo, "doomed"),
                        check=False)
    assert failed.returncode != 0, "skopeo still inspects a deleted tag"
    tags = json.loads(run_skopeo("list-tags", REMOTE,
                                 f"docker://{registry_url.split('://', 1)[1]}/{repo}").stdout)
    assert tags["Tags"] == ["keeper"]

    # The untouched image is still complete and still served exactly.
    assert_repo_holds(registry_url, repo, other, "keeper")
    out = run_skopeo("inspect", "--raw", REMOTE, docker_ref(registry_url, repo, "keeper"))
    assert out.stdout == other.index
