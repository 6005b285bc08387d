"""A destination that never returns has a bounded backlog: replications beyond
`upstreams.replication_max_backlog` per destination (the oldest first), or older than
`upstreams.replication_max_age_hours`, are given up as FAILED with the reason in
DescribeImageReplicationStatus and counted in `cargohold_replications_abandoned_total`; the
rest still replicate when the destination returns."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from conftest import RegistryProcess
from ecrhelpers import Artifact, ecr_client, image
from pydantic import ValidationError
from test_upstreams_mounts import cli, push_image
from test_upstreams_replication import eventually, fetch
from upstreamhelpers import LoggedRegistry

from cargohold.config_upstreams import UpstreamSettings
from tests.test_ops_metrics import scrape, value

pytestmark = pytest.mark.skipif(bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
                                reason="starts its own registries")
TIMEOUT = 60
DEST_ID = "666666666666"
ABANDONED = "cargohold_replications_abandoned_total"


class Source:
    def __init__(self, server: RegistryProcess, destination: LoggedRegistry) -> None:
        self.server = server
        self.destination = destination
        self.ecr = ecr_client(server.url, *server.admin_credentials)

    def push(self, repo: str) -> Artifact:
        artifact = image()
        push_image(self.server.url, repo, artifact)
        return artifact

    def status(self, repo: str) -> dict[str, str]:
        result = self.ecr.describe_image_replication_status(repositoryName=repo,
                                                            imageId={"imageTag": "v1"})
        [status] = result["replicationStatuses"]
        assert status["registryId"] == DEST_ID
        return status


def start_source(tmp_path_factory: pytest.TempPathFactory,
                 env: dict[str, str]) -> Iterator[Source]:
    destination = LoggedRegistry(tmp_path_factory.mktemp("dest"))  # down until started
    server = RegistryProcess(tmp_path_factory.mktemp("source") / "data",
                             env={"CARGOHOLD_UPSTREAMS__REPLICATION_RETRY_MAX": "1", **env})
    server.start()
    try:
        cli(server, "admin", "replication-destinations", "put", DEST_ID, "--url",
            destination.url)
        ecr_client(server.url, *server.admin_credentials).put_replication_configuration(
            replicationConfiguration={"rules": [{
                "destinations": [{"region": "us-east-1", "registryId": DEST_ID}],
                "repositoryFilters": [{"filter": "bl/", "filterType": "PREFIX_MATCH"}]}]})
        yield Source(server, destination)
    finally:
        server.stop()
        destination.stop()


@pytest.fixture
def bounded_backlog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    yield from start_source(tmp_path_factory,
                            {"CARGOHOLD_UPSTREAMS__REPLICATION_MAX_BACKLOG": "2"})


@pytest.fixture
def short_age(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    # 0.002 hours: 7.2 seconds.
    yield from start_source(tmp_path_factory,
                            {"CARGOHOLD_UPSTREAMS__REPLICATION_MAX_AGE_HOURS": "0.002"})


def test_the_oldest_beyond_the_backlog_bound_are_dropped(bounded_backlog: Source) -> None:
    source = bounded_backlog
    repos = [f"bl/img{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    artifacts = [source.push(repo) for repo in repos]
    dropped, kept = repos[:2], repos[2:]

    def given_up(repo: str) -> bool:
        status = source.status(repo)
        return status["status"] == "FAILED" and "Dropped" in status.get("failureCode", "")

    assert eventually(lambda: all(given_up(repo) for repo in dropped), 60)
    reason = source.status(dropped[0])["failureCode"]
    assert "more than 2 replications were waiting" in reason
    assert "replication_max_backlog" in reason
    for repo in kept:  # still retried: failing for now, not given up
        assert "Dropped" not in source.status(repo).get("failureCode", "")
    samples = scrape(source.server.url)
    assert value(samples, ABANDONED, destination=DEST_ID, reason="dropped") == 2
    assert value(samples, ABANDONED, destination=DEST_ID, reason="expired") == 0
    # The destination returns: the rest replicate, the dropped ones stay given up.
    source.destination.start()
    assert eventually(lambda: all(source.status(repo)["status"] == "COMPLETE"
                                  for repo in kept), 90)
    for repo, artifact in zip(repos, artifacts, strict=True):
        arrived = fetch(source.destination.url, f"/v2/{repo}/manifests/v1")
        if repo in kept:
            assert arrived.content == artifact.manifest
        else:
            assert arrived.status_code == 404
            assert given_up(repo)


def test_replications_older_than_the_age_bound_expire(short_age: Source) -> None:
    source = short_age
    repo = f"bl/old-{uuid.uuid4().hex[:6]}"
    source.push(repo)

    def expired() -> bool:
        status = source.status(repo)
        return status["status"] == "FAILED" and "Expired" in status.get("failureCode", "")

    assert eventually(expired, 60)
    reason = source.status(repo)["failureCode"]
    assert "not replicated within 0.002 hours" in reason and "last error" in reason
    assert value(scrape(source.server.url), ABANDONED, destination=DEST_ID,
                 reason="expired") == 1
    source.destination.start()
    fresh = f"bl/new-{uuid.uuid4().hex[:6]}"
    artifact = source.push(fresh)
    assert eventually(lambda: fetch(source.destination.url, f"/v2/{fresh}/manifests/v1")
                      .content == artifact.manifest)
    assert fetch(source.destination.url, f"/v2/{repo}/manifests/v1").status_code == 404
    assert expired()


@pytest.mark.parametrize("bad", [{"replication_max_backlog": 0},
                                 {"replication_max_backlog": "many"},
                                 {"replication_max_age_hours": 0},
                                 {"replication_max_age_hours": -1}])
def test_bad_bounds_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as exc:
        UpstreamSettings(**bad)
    assert next(iter(bad)) in str(exc.value)
    assert UpstreamSettings().replication_max_backlog == 100_000
    assert UpstreamSettings().replication_max_age_hours == 168
