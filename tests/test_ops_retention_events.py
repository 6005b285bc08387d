"""The in-server retention jobs report what they do: a lifecycle policy's expirations reach
notification endpoints as `lifecycle` events (written in the deleting transaction) and count in
`cargohold_lifecycle_expirations_total`; collections count in `cargohold_gc_runs_total` and
`cargohold_gc_reclaimed_bytes_total`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ecrhelpers import ecr_client

from tests import ocihelpers as oh
from tests.eventreceiver import Receiver
from tests.test_ops_events import write_config
from tests.test_ops_metrics import scrape, total

KEEP_NEWEST = json.dumps({"rules": [{
    "rulePriority": 1, "description": "keep the newest",
    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
    "action": {"type": "expire"}}]})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


def test_lifecycle_expirations_are_events_and_metrics(
        make_registry: Callable[..., Any], receiver: Receiver, tmp_path: Path) -> None:
    config = write_config(tmp_path / "events.toml", [
        {"name": "retention", "url": receiver.url("/retention"), "events": ["lifecycle"]},
        {"name": "deletes", "url": receiver.url("/deletes"), "events": ["delete"]},
    ], backoff_initial=0.2, backoff_max=1.0)
    config.write_text('lifecycle_interval = "1s"\ngc_interval = "1s"\ngc_grace = "0"\n'
                      + config.read_text())
    server = make_registry(["--config", str(config)])
    url, repo = server.url, "retention/events"
    old = oh.push_image(url, repo, "old")
    time.sleep(0.01)  # distinct push times: "old" is the older image
    new = oh.push_image(url, repo, "new")
    ecr_client(url, *server.admin_credentials).put_lifecycle_policy(
        repositoryName=repo, lifecyclePolicyText=KEEP_NEWEST)

    receiver.wait_for(lambda: len(receiver.accepted_on("/retention")) >= 1)
    events = [item.json["events"][0] for item in receiver.accepted_on("/retention")]
    # The distribution format has no lifecycle action: an expiration is a delete there.
    assert [(e["action"], e["target"]["digest"]) for e in events] == [("delete", old.digest)]
    assert receiver.accepted_on("/deletes") == []   # not a client's delete
    assert oh.get_manifest(url, repo, "old").status_code == 404
    assert oh.get_manifest(url, repo, new.digest).status_code == 200

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        samples = scrape(url)
        if total(samples, "cargohold_gc_reclaimed_bytes_total") > 0:
            break
        time.sleep(0.5)
    assert total(samples, "cargohold_lifecycle_expirations_total",
                 reason="imageCountMoreThan") == 1
    assert total(samples, "cargohold_gc_runs_total", result="success") >= 1
    # The expired image's own config and layer are gone; the newer image still pulls.
    assert total(samples, "cargohold_gc_reclaimed_bytes_total", kind="blobs") > 0
    for digest, data in new.blobs.items():
        assert requests.get(oh.blob_url(url, repo, digest), timeout=30).content == data
