"""Two stateless nodes on PostgreSQL + SeaweedFS S3: any node continues any upload, sees every
tag move at once, accepts the other's tokens, and survives the other's kill -9."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import signal
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
import requests
import sqlalchemy as sa
from ecrhelpers import ecr_client
from multinode import Cluster, healthy, node_pair
from ocihelpers import (
    EXTERNAL,
    assert_blob,
    build_image,
    get_manifest,
    push,
    push_image,
    random_bytes,
    sha256,
)
from retentionhelpers import run_gc
from test_retention_gc_race import _push_with_retries as push_with_retries

from cargohold.config import load_settings
from cargohold.services.retention.gc import GarbageCollector
from cargohold.services.storage import Storage

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers")
MiB = 1024 * 1024
TIMEOUT = 60
GC_PUSHERS, GC_ROUNDS = 2, 10


@pytest.fixture(scope="module")
def cluster(seaweed_s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with node_pair(tmp_path_factory.mktemp("pair"), seaweed_s3) as pair:
        yield pair


def patch(node_url: str, location: str, data: bytes, start: int) -> requests.Response:
    return requests.patch(node_url + location, data=data, timeout=TIMEOUT, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(data) - 1}"})


def test_upload_started_on_a_continued_on_b_finished_on_a(cluster: Cluster) -> None:
    a, b, repo = cluster.a.url, cluster.b.url, "multi/upload"
    chunks = [random_bytes(MiB), random_bytes(3 * MiB), random_bytes(9 * MiB + 7),
              random_bytes(100)]
    last = random_bytes(2 * MiB)
    data = b"".join(chunks) + last
    started = requests.post(f"{a}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    assert started.status_code == 202
    location, offset = started.headers["Location"], 0
    for node, chunk in zip([a, b, b, a], chunks, strict=True):
        resp = patch(node, location, chunk, offset)
        assert resp.status_code == 202, resp.text
        offset += len(chunk)
        assert resp.headers["Range"] == f"0-{offset - 1}"
        status = requests.get((b if node == a else a) + location, timeout=TIMEOUT)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"
    # Each acknowledged chunk left its running digest in the database: no node re-reads.
    engine = sa.create_engine(cluster.database_url)
    with engine.connect() as conn:
        state = conn.execute(sa.text("SELECT size, hash_state FROM upload_progress")).one()
    engine.dispose()
    assert state.size == offset and state.hash_state.startswith(b"ossl1sha256:")
    done = requests.put(f"{a}{location}?digest={sha256(data)}", data=last, timeout=TIMEOUT,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    for node in (a, b):
        assert_blob(node, repo, sha256(data), data)
    ranged = requests.get(f"{b}/v2/{repo}/blobs/{sha256(data)}", timeout=TIMEOUT,
                          headers={"Range": f"bytes={4 * MiB}-{6 * MiB - 1}"})
    assert ranged.status_code == 206 and ranged.content == data[4 * MiB:6 * MiB]
    # Nothing is left in the upload area: the staging objects went with the commit.
    client = cluster.seaweed.client()
    deadline = time.monotonic() + 30
    while client.list_objects_v2(Bucket=cluster.bucket, Prefix="uploads/").get("KeyCount", 0):
        assert time.monotonic() < deadline, "staging objects were never cleaned up"
        time.sleep(0.2)


def test_wrong_digest_on_b_keeps_nothing(cluster: Cluster) -> None:
    a, b, repo = cluster.a.url, cluster.b.url, "multi/bad"
    data = random_bytes(6 * MiB)
    started = requests.post(f"{a}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    location = started.headers["Location"]
    assert patch(a, location, data, 0).status_code == 202
    wrong = sha256(b"something else")
    resp = requests.put(f"{b}{location}?digest={wrong}", timeout=TIMEOUT)
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "DIGEST_INVALID"
    for node in (a, b):
        assert requests.head(f"{node}/v2/{repo}/blobs/{wrong}", timeout=TIMEOUT).status_code == 404
        assert requests.head(f"{node}/v2/{repo}/blobs/{sha256(data)}",
                             timeout=TIMEOUT).status_code == 404
        assert requests.get(node + location, timeout=TIMEOUT).status_code == 404


def test_tag_moved_on_a_is_seen_at_once_on_b(cluster: Cluster) -> None:
    a, b, repo = cluster.a.url, cluster.b.url, "multi/tags"
    first = push_image(a, repo, "latest")
    second = build_image(a, repo)
    seen: list[bytes] = []
    stop = threading.Event()

    def read_b() -> None:
        while not stop.is_set():
            resp = get_manifest(b, repo, "latest")
            assert resp.status_code == 200
            seen.append(resp.content)

    reader = threading.Thread(target=read_b)
    reader.start()
    try:
        time.sleep(0.3)
        push(a, repo, second, "latest")
        after = get_manifest(b, repo, "latest")  # the very next read on B
    finally:
        stop.set()
        reader.join()
    assert after.status_code == 200 and after.content == second.body
    assert set(seen) <= {first.body, second.body} and first.body in seen


def test_kill_9_mid_upload_loses_nothing_and_the_other_node_serves(cluster: Cluster) -> None:
    a, b, repo = cluster.a, cluster.b, "multi/crash"
    before = push_image(a.url, repo, "before")
    acknowledged = random_bytes(5 * MiB + 3)
    started = requests.post(f"{a.url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    location = started.headers["Location"]
    assert patch(a.url, location, acknowledged, 0).status_code == 202

    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        for _ in range(400):
            yield random_bytes(256 * 1024)
            sent.set()
            time.sleep(0.01)

    def interrupted_patch() -> None:
        with contextlib.suppress(requests.RequestException):  # the node dies under it
            requests.patch(a.url + location, data=slow_body(), timeout=TIMEOUT, headers={
                "Content-Type": "application/octet-stream"})

    writer = threading.Thread(target=interrupted_patch)
    writer.start()
    assert sent.wait(TIMEOUT)
    time.sleep(0.5)
    a.stop(signal.SIGKILL)
    writer.join()
    # B serves throughout: earlier content, and the upload where it was acknowledged.
    assert get_manifest(b.url, repo, "before").content == before.body
    status = requests.get(b.url + location, timeout=TIMEOUT)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(acknowledged) - 1}"
    rest = random_bytes(MiB)
    data = acknowledged + rest
    assert patch(b.url, location, rest, len(acknowledged)).status_code == 202
    done = requests.put(f"{b.url}{location}?digest={sha256(data)}", timeout=TIMEOUT)
    assert done.status_code == 201, done.text
    a.start()
    assert healthy(a.url)
    for node in (a.url, b.url):
        assert_blob(node, repo, sha256(data), data)
        assert get_manifest(node, repo, "before").content == before.body


def test_ecr_layer_parts_alternate_between_nodes(cluster: Cluster) -> None:
    """UploadLayerPart on A and B in turn (parts of 5 MiB and a small last one), then
    GetDownloadUrlForLayer: on S3 it is a presigned URL of the store itself."""
    key_id, secret = cluster.a.admin_credentials
    clients = [ecr_client(node.url, key_id, secret) for node in cluster.nodes]
    name = "multi/ecr"
    clients[0].create_repository(repositoryName=name)
    parts = [random_bytes(5 * MiB), random_bytes(5 * MiB), random_bytes(1234)]
    data = b"".join(parts)
    upload = clients[1].initiate_layer_upload(repositoryName=name)["uploadId"]
    offset = 0
    for index, part in enumerate(parts):
        clients[index % 2].upload_layer_part(
            repositoryName=name, uploadId=upload, partFirstByte=offset,
            partLastByte=offset + len(part) - 1, layerPartBlob=part)
        offset += len(part)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = clients[0].complete_layer_upload(repositoryName=name, uploadId=upload,
                                            layerDigests=[digest])
    assert done["layerDigest"] == digest
    url = clients[1].get_download_url_for_layer(repositoryName=name,
                                                layerDigest=digest)["downloadUrl"]
    assert url.startswith(cluster.seaweed.endpoint)
    assert requests.get(url, timeout=TIMEOUT).content == data


def test_tokens_and_passwords_from_a_work_on_b(seaweed_s3,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    with node_pair(tmp_path_factory.mktemp("secure-pair"), seaweed_s3,
                   anonymous=False) as pair:
        key_id, secret = pair.a.admin_credentials
        a, b, repo = pair.a.url, pair.b.url, "secure/app"
        token = requests.get(f"{a}/v2/token", auth=(key_id, secret), timeout=TIMEOUT, params={
            "service": "cargohold", "scope": f"repository:{repo}:pull,push"}).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        data = random_bytes(4096)
        pushed = requests.post(f"{b}/v2/{repo}/blobs/uploads/?digest={sha256(data)}",
                               data=data, headers=bearer, timeout=TIMEOUT)
        assert pushed.status_code == 201, pushed.text
        assert requests.get(f"{a}/v2/{repo}/blobs/{sha256(data)}", headers=bearer,
                            timeout=TIMEOUT).content == data
        ecr = boto3.client("ecr", endpoint_url=a, region_name="us-east-1",
                           aws_access_key_id=key_id, aws_secret_access_key=secret)
        encoded = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        user, password = base64.b64decode(encoded).decode().split(":", 1)
        resp = requests.get(f"{b}/v2/{repo}/blobs/{sha256(data)}", auth=(user, password),
                            timeout=TIMEOUT)
        assert resp.status_code == 200 and resp.content == data
        assert requests.get(f"{b}/v2/{repo}/blobs/{sha256(data)}",
                            timeout=TIMEOUT).status_code == 401


def test_gc_on_a_while_b_accepts_pushes(seaweed_s3,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Collections at grace 0 with node A's configuration, back to back, while pushers on node
    B push images that share a layer and delete every other one: a push either wins or gets
    MANIFEST_BLOB_UNKNOWN and pushes again; afterwards every kept image pulls whole from both
    nodes, and what only deleted images used has left the bucket."""
    with node_pair(tmp_path_factory.mktemp("gc-pair"), seaweed_s3) as pair:
        base = pair.b.url
        stats = {"created": 0, "retried": 0}
        pushed: dict[tuple[str, str], dict[str, bytes]] = {}
        all_blobs: set[str] = set()
        errors: list[BaseException] = []

        def pusher(index: int) -> None:
            repo = f"gcpair/p{index}"
            try:
                for round_ in range(GC_ROUNDS):
                    tag = f"r{round_}"
                    blobs = push_with_retries(base, repo, tag, stats)
                    all_blobs.update(blobs)
                    pushed[(repo, tag)] = blobs
                    if round_ % 2:  # deleted again: its blobs become garbage as others push
                        digest = get_manifest(base, repo, tag).headers["Docker-Content-Digest"]
                        assert requests.delete(f"{base}/v2/{repo}/manifests/{digest}",
                                               timeout=TIMEOUT).status_code == 202
                        del pushed[(repo, tag)]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=pusher, args=(i,)) for i in range(GC_PUSHERS)]
        for thread in threads:
            thread.start()
        storage = Storage.from_settings(load_settings(
            data_dir=pair.a.data_dir, database_url=pair.database_url,
            secret_key=pair.a.env["CARGOHOLD_SECRET_KEY"],
            blob_store=seaweed_s3.blob_store_settings(pair.bucket)))
        collector, runs = GarbageCollector(storage), 0
        try:
            while any(thread.is_alive() for thread in threads):
                if asyncio.run(collector.run(0)).ran:
                    runs += 1
                time.sleep(random.uniform(0, 0.05))  # leave pushes a chance to win too
        finally:
            storage.close()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert runs >= 1 and stats["created"] == GC_PUSHERS * GC_ROUNDS
        # The command on A once more: nothing kept goes; what deleted images alone used does.
        run_gc(pair.a.data_dir, "--grace", "0", env=pair.a.env)
        for (repo, tag), blobs in pushed.items():
            for node in (pair.a.url, pair.b.url):
                assert get_manifest(node, repo, tag).status_code == 200
                for digest, data in blobs.items():
                    assert_blob(node, repo, digest, data)
        kept = {digest for blobs in pushed.values() for digest in blobs}
        pages = seaweed_s3.client().get_paginator("list_objects_v2").paginate(
            Bucket=pair.bucket, Prefix="blobs/")
        stored = {"sha256:" + item["Key"].rpartition("/")[2]
                  for page in pages for item in page.get("Contents", [])}
        assert stored == kept, (len(stored), len(kept), len(all_blobs))
