"""fsck on a store the test corrupts while the server runs: a truncated blob, a deleted blob,
a corrupt blob, orphan bytes, leftover upload scratch and a lost reference row."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from tests.ocihelpers import build_image, push
from tests.retentionhelpers import cargohold


def _path(data_dir: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":")
    return data_dir / "blobs" / "blobs" / algorithm / hexpart[:2] / hexpart


def _fsck(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = cargohold("fsck", "--data-dir", str(data_dir), "--output", "json", *args,
                       check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _kinds(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for problem in report["problems"]:
        found.setdefault(problem["kind"], []).append(problem)
    return found


def test_fsck_finds_and_repairs_a_corrupted_store(make_registry) -> None:
    server = make_registry(env={"CARGOHOLD_GC_INTERVAL": "0"})
    base, repo, data = server.url, "fsck/app", server.data_dir
    images = [push(base, repo, build_image(base, repo, layers=1), f"v{i}") for i in range(4)]
    code, clean = _fsck(data)
    assert code == 0 and clean["problems"] == [] and clean["manifests_checked"] == 4

    truncated, deleted, corrupt = (list(images[i].blobs)[1] for i in range(3))
    with open(_path(data, truncated), "r+b") as handle:
        handle.truncate(10)
    _path(data, deleted).unlink()
    corrupt_path = _path(data, corrupt)
    corrupt_path.write_bytes(b"x" * corrupt_path.stat().st_size)
    orphan = os.urandom(300)
    orphan_digest = "sha256:" + hashlib.sha256(orphan).hexdigest()
    _path(data, orphan_digest).parent.mkdir(parents=True, exist_ok=True)
    _path(data, orphan_digest).write_bytes(orphan)
    scratch = data / "blobs" / "uploads" / str(uuid.uuid4())
    scratch.write_bytes(b"half an upload")
    two_hours_ago = time.time() - 7200
    for path in (_path(data, orphan_digest), scratch):
        os.utime(path, (two_hours_ago, two_hours_ago))
    lost = list(images[3].blobs)[1]
    with sqlite3.connect(data / "metadata.db") as db:
        db.execute("DELETE FROM manifest_references WHERE digest = ?", (lost,))

    code, report = _fsck(data)
    kinds = _kinds(report)
    assert code == 1
    assert [p["digest"] for p in kinds["size_mismatch"]] == [truncated]
    assert kinds["size_mismatch"][0]["actual_size"] == 10
    assert [p["digest"] for p in kinds["missing_blob"]] == [deleted]
    assert kinds["missing_blob"][0]["repositories"] == [repo]
    assert kinds["missing_blob"][0]["manifests"] == [f"{repo}@{images[1].digest}"]
    assert [p["digest"] for p in kinds["digest_mismatch"]] == [corrupt]
    assert kinds["digest_mismatch"][0]["manifests"] == [f"{repo}@{images[2].digest}"]
    assert [p["digest"] for p in kinds["orphan_blob"]] == [orphan_digest]
    assert [p["upload"] for p in kinds["leftover_upload"]] == [scratch.name]
    assert kinds["unrecorded_references"][0]["references"] == [f"blob:{lost}"]
    assert not any(p["repaired"] for p in report["problems"])
    assert _path(data, orphan_digest).exists() and scratch.exists()

    _, quick = _fsck(data, "--quick")
    assert "digest_mismatch" not in _kinds(quick)

    code, repaired = _fsck(data, "--repair")
    assert code == 1
    fixed = {p["kind"] for p in repaired["problems"] if p["repaired"]}
    assert fixed == {"orphan_blob", "leftover_upload", "unrecorded_references"}
    assert not _path(data, orphan_digest).exists() and not scratch.exists()
    code, after = _fsck(data)
    assert code == 1
    assert set(_kinds(after)) == {"size_mismatch", "missing_blob", "digest_mismatch"}
