"""Garbage collection and fsck on an S3 blob store (SeaweedFS): a collection deletes the objects
of what became unreferenced and keeps the rest byte-identical; fsck finds a truncated and an
orphan object in the bucket, and `--repair` removes the orphan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from ocihelpers import EXTERNAL, assert_blob, push_image, random_bytes, sha256
from seaweed import SeaweedS3

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")
TIMEOUT = 60


def objects(seaweed: SeaweedS3, bucket: str) -> dict[str, int]:
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="blobs/")
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


def key_of(digest: str) -> str:
    algorithm, hexpart = digest.split(":")
    return f"blobs/{algorithm}/{hexpart[:2]}/{hexpart}"


def cargohold(data_dir: Path, env: dict[str, str], *args: str) -> tuple[int, Any]:
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                             str(data_dir), "--output", "json"], capture_output=True, text=True,
                            timeout=TIMEOUT, env={**os.environ, **env})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_gc_and_fsck_on_s3(make_registry: Any, seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.new_bucket()
    env = seaweed_s3.blob_store_env(bucket)
    server = make_registry(env=env)
    kept = push_image(server.url, "s3gc/app", "kept")
    dropped = push_image(server.url, "s3gc/app", "dropped")
    response = requests.delete(f"{server.url}/v2/s3gc/app/manifests/{dropped.digest}",
                               timeout=TIMEOUT)
    assert response.status_code == 202
    before = objects(seaweed_s3, bucket)
    assert all(key_of(d) in before for d in [*kept.blobs, *dropped.blobs])

    code, report = cargohold(server.data_dir, env, "gc", "--grace", "0")
    assert code == 0, report
    after = objects(seaweed_s3, bucket)
    gone = set(before) - set(after)
    assert gone == {key_of(d) for d in dropped.blobs}
    assert report["blobs_deleted"] == len(dropped.blobs)
    assert report["bytes_reclaimed"] == sum(before[key] for key in gone)
    for digest, data in kept.blobs.items():
        assert_blob(server.url, "s3gc/app", digest, data)
    assert cargohold(server.data_dir, env, "gc", "--grace", "0")[1]["blobs_deleted"] == 0

    # A truncated object and an orphan object: fsck reports both; --repair drops the orphan.
    client = seaweed_s3.client()
    layer = max(kept.blobs, key=lambda d: len(kept.blobs[d]))
    client.put_object(Bucket=bucket, Key=key_of(layer), Body=kept.blobs[layer][:-1])
    orphan = random_bytes(1000)
    client.put_object(Bucket=bucket, Key=key_of(sha256(orphan)), Body=orphan)
    # (grace 0: fsck leaves bytes younger than gc_grace alone, an upload may be placing them)
    env["CARGOHOLD_GC_GRACE"] = "0"
    code, found = cargohold(server.data_dir, env, "fsck", "--quick")
    assert code == 1
    text = json.dumps(found)
    assert layer in text and sha256(orphan) in text
    cargohold(server.data_dir, env, "fsck", "--quick", "--repair")
    assert key_of(sha256(orphan)) not in objects(seaweed_s3, bucket)
    assert key_of(layer) in objects(seaweed_s3, bucket)   # reported, never deleted
