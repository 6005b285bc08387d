"""Garbage collection against a running server: it reclaims exactly the unreferenced bytes,
keeps everything referenced byte-identical, and a second run finds nothing."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import requests

from tests.clienthelpers import (
    build_multiarch,
    docker_ref,
    read_layout_blob,
    require_oras,
    require_skopeo,
    run_skopeo,
    write_multiarch_layout,
)
from tests.ocihelpers import (
    OCI_LAYER_GZIP,
    Manifest,
    assert_blob,
    assert_manifest,
    build_image,
    descriptor,
    encode,
    push,
    push_blob,
    random_bytes,
)
from tests.retentionhelpers import blob_files, run_gc

NO_BACKGROUND_GC = {"CARGOHOLD_GC_INTERVAL": "0"}


def _delete(base: str, repo: str, digest: str) -> None:
    resp = requests.delete(f"{base}/v2/{repo}/manifests/{digest}", timeout=30)
    assert resp.status_code == 202, resp.text


def test_gc_reclaims_exactly_unreferenced_bytes(make_registry) -> None:
    server = make_registry(env=NO_BACKGROUND_GC)
    base, repo, other = server.url, f"gc/{uuid.uuid4().hex[:8]}", f"gc/{uuid.uuid4().hex[:8]}"
    kept = push(base, repo, build_image(base, repo, layers=2), "kept")
    doomed = push(base, repo, build_image(base, repo, layers=2), "doomed")
    # A layer both images share stays: the kept image still needs it.
    shared = next(iter(kept.blobs.items()))
    push_blob(base, repo, shared[1])
    # A referrer of the doomed image (with a blob of its own) goes with its subject.
    referrer = push(base, repo, build_image(base, repo, artifact_type="application/x-sbom",
                                            subject=doomed.descriptor()))
    # The same bytes as a doomed layer, also used by another repository: the bytes stay.
    doomed_layer_digest, doomed_layer = list(doomed.blobs.items())[1]
    push(base, other, build_image(base, other, layers=1), "x")
    push_blob(base, other, doomed_layer)
    push(base, other, _manifest_using(base, other, doomed_layer), "uses-layer")
    # An uploaded blob nothing references yet.
    stray = random_bytes(3000)
    stray_digest = push_blob(base, repo, stray)

    before = blob_files(server.data_dir)
    # Nothing is older than the default grace period: nothing but manifests could go.
    fresh = run_gc(server.data_dir)
    assert fresh["blobs_deleted"] == 0 and fresh["bytes_reclaimed"] == 0
    assert blob_files(server.data_dir) == before

    _delete(base, repo, doomed.digest)
    expected_gone = (set(doomed.blobs) | set(referrer.blobs)) - set(kept.blobs)
    expected_gone -= {doomed_layer_digest}
    expected_gone |= {stray_digest}

    dry = run_gc(server.data_dir, "--grace", "0", "--dry-run")
    assert dry["dry_run"] is True
    assert blob_files(server.data_dir) == before
    report = run_gc(server.data_dir, "--grace", "0")
    after = blob_files(server.data_dir)
    gone = set(before) - set(after)
    assert gone == expected_gone
    assert report["blobs_deleted"] == len(expected_gone) == dry["blobs_deleted"]
    assert report["bytes_reclaimed"] == sum(before[d] for d in gone) == dry["bytes_reclaimed"]
    assert report["manifests_deleted"] == 1 == dry["manifests_deleted"]  # the referrer
    assert report["dry_run"] is False and "uploads_purged" in report

    # Everything still referenced pulls back byte-identical.
    assert_manifest(base, repo, "kept", kept)
    for digest, data in kept.blobs.items():
        assert_blob(base, repo, digest, data)
    assert_blob(base, other, doomed_layer_digest, doomed_layer)
    assert requests.get(f"{base}/v2/{repo}/manifests/{referrer.digest}",
                        timeout=30).status_code == 404
    assert requests.head(f"{base}/v2/{repo}/blobs/{stray_digest}", timeout=30).status_code == 404

    again = run_gc(server.data_dir, "--grace", "0")
    assert (again["blobs_deleted"], again["bytes_reclaimed"], again["manifests_deleted"],
            again["links_deleted"]) == (0, 0, 0, 0)
    assert blob_files(server.data_dir) == after


def _manifest_using(base: str, repo: str, layer: bytes) -> Manifest:
    """An image whose one layer is `layer` (already uploaded to `repo`)."""
    image = build_image(base, repo, layers=0)
    doc = json.loads(image.body)
    doc["layers"] = [descriptor(OCI_LAYER_GZIP, layer)]
    image.body = encode(doc)
    return image


def test_gc_delete_untagged_collects_unreachable_manifests(make_registry) -> None:
    server = make_registry(env=NO_BACKGROUND_GC)
    base, repo = server.url, f"gc/{uuid.uuid4().hex[:8]}"
    tagged = push(base, repo, build_image(base, repo), "v1")
    untagged = push(base, repo, build_image(base, repo))
    before = blob_files(server.data_dir)
    plain = run_gc(server.data_dir, "--grace", "0")
    assert plain["manifests_deleted"] == 0 and blob_files(server.data_dir) == before
    report = run_gc(server.data_dir, "--grace", "0", "--delete-untagged")
    assert report["manifests_deleted"] == 1
    assert set(before) - set(blob_files(server.data_dir)) == set(untagged.blobs) - set(
        tagged.blobs)
    assert_manifest(base, repo, "v1", tagged)
    assert requests.get(f"{base}/v2/{repo}/manifests/{untagged.digest}",
                        timeout=30).status_code == 404


def test_gc_after_skopeo_pushes_keeps_what_skopeo_pulls_back(make_registry,
                                                             tmp_path: Path) -> None:
    require_skopeo()
    server = make_registry(env=NO_BACKGROUND_GC)
    base, repo = server.url, "gc/multiarch"
    old, new = build_multiarch(uuid.uuid4().hex), build_multiarch(uuid.uuid4().hex)
    for image, tag in ((old, "old"), (new, "new")):
        layout = tmp_path / f"src-{tag}"
        write_multiarch_layout(layout, image, tag)
        run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                   f"oci:{layout}:{tag}", docker_ref(base, repo, tag))
    before = blob_files(server.data_dir)
    _delete(base, repo, old.index_digest)
    report = run_gc(server.data_dir, "--grace", "0", "--delete-untagged")
    old_blobs = {d for image in old.images for d in image.blobs}
    assert set(before) - set(blob_files(server.data_dir)) == old_blobs
    assert report["manifests_deleted"] == 2  # the old index's platform manifests
    out = tmp_path / "pulled"
    run_skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
               docker_ref(base, repo, "new"), f"oci:{out}:new")
    for digest, data in new.all_blobs.items():
        assert read_layout_blob(out, digest) == data


def test_gc_after_oras_pushes_keeps_what_oras_pulls_back(make_registry, tmp_path: Path) -> None:
    oras = require_oras()
    server = make_registry(env=NO_BACKGROUND_GC)
    client = oras.OrasClient(hostname=server.host, insecure=True, tls_verify=False)
    repo, files = "gc/artifacts", {}
    for name in ("old", "new"):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(random_bytes(5000))
        files[name] = path
        client.push(target=f"{server.host}/{repo}:{name}",
                    files=[f"{path}:application/vnd.example.data"],
                    disable_path_validation=True)
    old_digest = requests.head(f"{server.url}/v2/{repo}/manifests/old", timeout=30, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"}).headers["Docker-Content-Digest"]
    _delete(server.url, repo, old_digest)
    before = blob_files(server.data_dir)
    report = run_gc(server.data_dir, "--grace", "0")
    gone = set(before) - set(blob_files(server.data_dir))
    assert gone == {"sha256:" + hashlib.sha256(files["old"].read_bytes()).hexdigest()}
    assert report["bytes_reclaimed"] == 5000
    out = tmp_path / "out"
    pulled = client.pull(target=f"{server.host}/{repo}:new", outdir=str(out))
    assert [Path(p).read_bytes() for p in pulled] == [files["new"].read_bytes()]
