"""Publishing upload files in a batch: each commit is durable and atomic on its own, and a
failing one stops only itself."""

from __future__ import annotations

import os
from pathlib import Path

from cargohold.storage.blob_commits import Commit, commit_files


def _upload(root: Path, name: str, data: bytes) -> Path:
    path = root / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_batch_publishes_each_file_and_a_failure_stops_only_its_own(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    kept = _upload(tmp_path, "a", b"alpha")
    longer = _upload(tmp_path, "b", b"bravo and a chunk that was not acknowledged")
    again = _upload(tmp_path, "c", b"charlie")
    existing = blobs / "sha256" / "cc" / "c-target"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"charlie")
    commits = [
        Commit(str(kept), str(blobs / "sha256" / "aa" / "a-target"), 5),  # a prefix not made yet
        Commit(str(tmp_path / "uploads" / "gone"), str(blobs / "sha256" / "dd" / "d-target"), 3),
        Commit(str(longer), str(blobs / "sha256" / "bb" / "b-target"), 5),
        Commit(str(again), str(existing), 7),
    ]
    outcomes = commit_files(commits, str(blobs), None)

    assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[1], FileNotFoundError)
    assert (blobs / "sha256" / "aa" / "a-target").read_bytes() == b"alpha"
    assert (blobs / "sha256" / "bb" / "b-target").read_bytes() == b"bravo"  # the verified size
    assert existing.read_bytes() == b"charlie"
    assert not (blobs / "sha256" / "dd" / "d-target").exists()
    assert os.listdir(tmp_path / "uploads") == []  # published, or already in place
