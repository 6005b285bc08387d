"""Replication to other registries through the ECR API's replication configuration: to the
CNCF registry and to a second Cargohold with authentication, byte-identical (index, children,
blobs, referrers, tags), deletes when the rule asks, and a destination that was down catches
up. Destinations are configured with `cargohold admin replication-destinations put`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from clienthelpers import build_multiarch, run_skopeo, write_multiarch_layout
from conftest import RegistryProcess
from ecrhelpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    Ecr,
    assert_aws_error,
    descriptor,
    ecr_client,
    image,
    start_ecr,
)
from upstreamhelpers import LoggedRegistry

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60
CNCF_ID, PRIVATE_ID, LATE_ID = "111111111111", "222222222222", "333333333333"
ACCEPT = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}


def eventually(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


class Source:
    def __init__(self, server: RegistryProcess) -> None:
        self.server = server
        self.ecr = ecr_client(server.url, *server.admin_credentials)

    def cli(self, *args: str, stdin: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
        result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                                 str(self.server.data_dir)], input=stdin, text=True,
                                capture_output=True, timeout=TIMEOUT, env=env, check=False)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def cncf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    registry = LoggedRegistry(tmp_path_factory.mktemp("cncf-dest")).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    """A destination that is down when the push happens."""
    registry = LoggedRegistry(tmp_path_factory.mktemp("late-dest"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, cncf: LoggedRegistry, private: Ecr,
           late: LoggedRegistry) -> Iterator[Source]:
    server = RegistryProcess(tmp_path_factory.mktemp("source") / "data",
                             env={"CARGOHOLD_UPSTREAMS__REPLICATION_RETRY_MAX": "1"})
    server.start()
    try:
        src = Source(server)
        src.cli("admin", "replication-destinations", "put", CNCF_ID, "--url", cncf.url)
        src.cli("admin", "replication-destinations", "put", PRIVATE_ID, "--url", private.url,
                "--username", private.key_id, "--password-stdin", stdin=private.secret + "\n")
        src.cli("admin", "replication-destinations", "put", LATE_ID, "--url", late.url)
        src.ecr.put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": "us-east-1", "registryId": CNCF_ID},
                              {"region": "us-east-1", "registryId": PRIVATE_ID}],
             "repositoryFilters": [{"filter": "rep/", "filterType": "PREFIX_MATCH"}],
             "deleteReplication": {"enabled": True}},
            {"destinations": [{"region": "eu-west-1", "registryId": LATE_ID}],
             "repositoryFilters": [{"filter": "late/", "filterType": "PREFIX_MATCH"}]},
        ]})
        yield src
    finally:
        server.stop()


def fetch(url: str, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(url + path, headers=ACCEPT, auth=auth, timeout=TIMEOUT)


def statuses(source: Source, repo: str, tag: str) -> dict[str, str]:
    result = source.ecr.describe_image_replication_status(repositoryName=repo,
                                                          imageId={"imageTag": tag})
    return {s["registryId"]: s["status"] for s in result["replicationStatuses"]}


def test_describe_registry_shows_the_configuration(source: Source) -> None:
    config = source.ecr.describe_registry()["replicationConfiguration"]
    assert [r["repositoryFilters"][0]["filter"] for r in config["rules"]] == ["rep/", "late/"]


def test_bad_configurations_change_nothing(source: Source) -> None:
    before = source.ecr.describe_registry()["replicationConfiguration"]
    own_id = source.ecr.describe_registry()["registryId"]
    unknown = {"rules": [{"destinations": [{"region": "us-east-1",
                                            "registryId": "999999999999"}]}]}
    own = {"rules": [{"destinations": [{"region": "us-east-1", "registryId": own_id}]}]}
    bad_filter = {"rules": [{"destinations": [], "repositoryFilters": [
        {"filter": "x/", "filterType": "SUFFIX_MATCH"}]}]}
    request = Ecr(source.server, *source.server.admin_credentials, source.ecr,
                  requests.Session())
    assert_aws_error(request.signed("PutReplicationConfiguration",
                                    {"replicationConfiguration": unknown}),
                     "ValidationException")
    assert_aws_error(request.signed("PutReplicationConfiguration",
                                    {"replicationConfiguration": own}),
                     "InvalidParameterException")
    assert_aws_error(request.signed("PutReplicationConfiguration",
                                    {"replicationConfiguration": bad_filter}),
                     "InvalidParameterException")
    assert_aws_error(request.signed("DescribeImageReplicationStatus", {
        "repositoryName": "rep/absent", "imageId": {"imageTag": "v1"}}),
        "RepositoryNotFoundException")
    source.ecr.create_repository(repositoryName="rep/empty")
    assert_aws_error(request.signed("DescribeImageReplicationStatus", {
        "repositoryName": "rep/empty", "imageId": {"imageTag": "v1"}}),
        "ImageNotFoundException")
    assert source.ecr.describe_registry()["replicationConfiguration"] == before


def test_a_multiarch_image_and_its_referrer_replicate_byte_identical(
        source: Source, cncf: LoggedRegistry, private: Ecr, tmp_path: Path) -> None:
    repo = f"rep/app-{uuid.uuid4().hex[:6]}"
    pushed = build_multiarch(uuid.uuid4().hex)
    write_multiarch_layout(tmp_path / "layout", pushed, "v1")
    run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{tmp_path / 'layout'}:v1", f"docker://{source.server.host}/{repo}:v1")
    subject = pushed.images[0]
    signature = image(artifact_type="application/vnd.example.signature",
                      subject=descriptor(OCI_MANIFEST, subject.manifest))
    for blob in signature.blobs:
        requests.post(f"{source.server.url}/v2/{repo}/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{source.server.url}/v2/{repo}/manifests/{signature.digest}",
                        data=signature.manifest, headers={"Content-Type": OCI_MANIFEST},
                        timeout=TIMEOUT).status_code == 201
    auth = (private.key_id, private.secret)
    for url, credentials in ((cncf.url, None), (private.url, auth)):
        tagged = eventually(lambda u=url, c=credentials: fetch(u, f"/v2/{repo}/manifests/v1", c)
                            .status_code == 200)
        assert tagged, f"{repo}:v1 never reached {url}"
        response = fetch(url, f"/v2/{repo}/manifests/v1", credentials)
        assert response.content == pushed.index
        assert response.headers["Docker-Content-Digest"] == pushed.index_digest
        for digest, data in pushed.all_blobs.items():
            kind = "manifests" if digest in {i.manifest_digest for i in pushed.images} | {
                pushed.index_digest} else "blobs"
            assert fetch(url, f"/v2/{repo}/{kind}/{digest}", credentials).content == data
    assert eventually(lambda: fetch(private.url, f"/v2/{repo}/manifests/{signature.digest}",
                                    auth).status_code == 200)
    referrers = fetch(private.url, f"/v2/{repo}/referrers/{subject.manifest_digest}", auth)
    assert [m["digest"] for m in referrers.json()["manifests"]] == [signature.digest]
    assert eventually(lambda: set(statuses(source, repo, "v1").values()) == {"COMPLETE"})
    assert set(statuses(source, repo, "v1")) == {CNCF_ID, PRIVATE_ID}
    # Deletes follow when the rule asks.
    gone = requests.delete(f"{source.server.url}/v2/{repo}/manifests/{signature.digest}",
                           timeout=TIMEOUT)
    assert gone.status_code == 202
    assert eventually(lambda: fetch(cncf.url, f"/v2/{repo}/manifests/{signature.digest}"
                                    ).status_code == 404)


def test_a_destination_that_was_down_catches_up(source: Source, late: LoggedRegistry) -> None:
    repo = f"late/app-{uuid.uuid4().hex[:6]}"
    artifact = image()
    for blob in artifact.blobs:
        requests.post(f"{source.server.url}/v2/{repo}/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{source.server.url}/v2/{repo}/manifests/v1", data=artifact.manifest,
                        headers={"Content-Type": OCI_MANIFEST},
                        timeout=TIMEOUT).status_code == 201
    assert eventually(lambda: statuses(source, repo, "v1") == {LATE_ID: "FAILED"})
    late.start()
    assert eventually(lambda: fetch(late.url, f"/v2/{repo}/manifests/v1").content
                      == artifact.manifest)
    assert eventually(lambda: statuses(source, repo, "v1") == {LATE_ID: "COMPLETE"})


def test_replication_survives_kill_9_of_the_source(source: Source,
                                                   late: LoggedRegistry) -> None:
    """Queued while the destination is down, the work outlives a kill -9 and a restart."""
    late.stop()
    repo = f"late/killed-{uuid.uuid4().hex[:6]}"
    artifact = image()
    for blob in artifact.blobs:
        requests.post(f"{source.server.url}/v2/{repo}/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{source.server.url}/v2/{repo}/manifests/v1", data=artifact.manifest,
                        headers={"Content-Type": OCI_MANIFEST},
                        timeout=TIMEOUT).status_code == 201
    source.server.restart(signal.SIGKILL)
    late.start()
    assert eventually(lambda: fetch(late.url, f"/v2/{repo}/manifests/v1").content
                      == artifact.manifest)
    assert eventually(lambda: statuses(source, repo, "v1") == {LATE_ID: "COMPLETE"})


def test_backfill_copies_what_existed_before_the_rule(source: Source, cncf: LoggedRegistry,
                                                      late: LoggedRegistry) -> None:
    repo = f"old/app-{uuid.uuid4().hex[:6]}"
    artifact = image()
    for blob in artifact.blobs:
        requests.post(f"{source.server.url}/v2/{repo}/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{source.server.url}/v2/{repo}/manifests/v1", data=artifact.manifest,
                        headers={"Content-Type": OCI_MANIFEST},
                        timeout=TIMEOUT).status_code == 201
    config = source.ecr.describe_registry()["replicationConfiguration"]
    config["rules"].append({
        "destinations": [{"region": "us-east-1", "registryId": CNCF_ID}],
        "repositoryFilters": [{"filter": "old/", "filterType": "PREFIX_MATCH"}]})
    source.ecr.put_replication_configuration(replicationConfiguration=config)
    assert fetch(cncf.url, f"/v2/{repo}/manifests/v1").status_code == 404
    started = source.ecr.start_replication_backfill(
        destination={"region": "us-east-1", "registryId": CNCF_ID})
    backfill_id = started["replicationBackfillId"]

    def finished() -> dict[str, Any] | None:
        result = source.ecr.describe_replication_backfill_results(
            replicationBackfillId=backfill_id)
        return result if result["status"] == "COMPLETE" else None

    result = eventually(finished)
    assert result, "the backfill never completed"
    progress = result["progress"]
    assert progress["completedReplicationCount"] == progress["totalReplicationCount"] >= 2
    assert {r["repositoryName"] for r in result["results"]} >= {repo}
    assert fetch(cncf.url, f"/v2/{repo}/manifests/v1").content == artifact.manifest
    listed = source.ecr.list_replication_backfills()["backfills"]
    assert backfill_id in {b["replicationBackfillId"] for b in listed}
    request = Ecr(source.server, *source.server.admin_credentials, source.ecr,
                  requests.Session())
    assert_aws_error(request.signed("StopReplicationBackfill",
                                    {"replicationBackfillId": backfill_id}),
                     "ReplicationBackfillInvalidStatusException")
    assert_aws_error(request.signed("DescribeReplicationBackfillResults",
                                    {"replicationBackfillId": str(uuid.uuid4())}),
                     "ReplicationBackfillNotFoundException")
    assert_aws_error(request.signed("StartReplicationBackfill", {
        "destination": {"region": "ap-south-1", "registryId": CNCF_ID}}),
        "ValidationException")
    # A destination that is down: in progress, a second start is refused, then stopped.
    late.stop()
    pending = image()
    for blob in pending.blobs:
        requests.post(f"{source.server.url}/v2/late/bf/blobs/uploads/?digest="
                      f"{descriptor('x/y', blob)['digest']}", data=blob, timeout=TIMEOUT)
    assert requests.put(f"{source.server.url}/v2/late/bf/manifests/v1", data=pending.manifest,
                        headers={"Content-Type": OCI_MANIFEST},
                        timeout=TIMEOUT).status_code == 201
    running = source.ecr.start_replication_backfill(
        destination={"region": "eu-west-1", "registryId": LATE_ID})
    def backfills() -> list[tuple[str, str, str]]:
        return [(b["replicationBackfillId"], b["destination"]["registryId"], b["startedAt"])
                for b in source.ecr.list_replication_backfills()["backfills"]]

    before = backfills()
    assert_aws_error(request.signed("StartReplicationBackfill", {
        "destination": {"region": "eu-west-1", "registryId": LATE_ID}}),
        "ReplicationBackfillInProgressException")
    assert backfills() == before
    stopped = source.ecr.stop_replication_backfill(
        replicationBackfillId=running["replicationBackfillId"])
    assert stopped["status"] == "STOPPED"
    late.start()
