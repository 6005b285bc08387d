"""Event notifications from real servers to a real HTTP receiver: both formats, push, tag,
pull and delete events, HMAC signatures, retries of failing endpoints, delivery after kill -9,
configuration refused at start-up, and the `cargohold events` commands."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ecrhelpers import ecr_client

from tests import ocihelpers as oh
from tests.conftest import free_port
from tests.dbfixtures import postgres_available, postgres_database
from tests.eventreceiver import Receiver
from tests.test_ops_metrics import scrape, value

DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
SECRET = "0123456789abcdef-signing-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


def write_config(path: Path, endpoints: list[dict[str, Any]], **notifications: Any) -> Path:
    """A TOML file with [notifications] settings and [[notifications.endpoints]] tables."""
    def toml(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"
        return json.dumps(value)

    lines = ["[notifications]", *(f"{k} = {toml(v)}" for k, v in notifications.items())]
    for endpoint in endpoints:
        lines.append("[[notifications.endpoints]]")
        lines += [f"{k} = {toml(v)}" for k, v in endpoint.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                             str(data_dir)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout


def events_of(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    found = []
    for item in receiver.accepted_on(path):
        assert item.headers["Content-Type"] == DISTRIBUTION
        envelope = item.json
        assert set(envelope) == {"events"} and len(envelope["events"]) == 1
        found.append(envelope["events"][0])
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable")
    with postgres_database() as url:
        yield {"CARGOHOLD_DATABASE_URL": url}


def test_events_in_both_formats_for_push_tag_pull_delete(
        make_registry: Callable[..., Any], receiver: Receiver, tmp_path: Path,
        database_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "events.toml", [
        {"name": "dist", "url": receiver.url("/dist"), "secret": SECRET,
         "headers": {"X-Team": "ops"}, "events": ["push", "tag", "delete", "pull"]},
        {"name": "ecr", "url": receiver.url("/ecr"), "format": "ecr",
         "events": ["push", "tag", "delete"], "repositories": ["events/*"]},
        {"name": "elsewhere", "url": receiver.url("/elsewhere"),
         "repositories": ["other/*"]},
    ], backoff_initial=0.2, backoff_max=1.0)
    server = make_registry(["--config", str(config), "--workers", "2"], env=database_env)
    url, repo = server.url, "events/app"

    first = oh.build_image(url, repo)
    response = requests.put(oh.manifest_url(url, repo, "v1"), data=first.body, timeout=30,
                            headers={"Content-Type": first.media_type,
                                     "X-Request-ID": "push-req-1"})
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "push-req-1"
    second = oh.push_image(url, repo, "v2")
    index = oh.push(url, repo, oh.build_index([first, second]), "multi")
    oh.push(url, repo, first, "stable")                     # a tag moved onto `first`
    oh.push(url, repo, first, "stable")                     # no change: no event
    assert oh.get_manifest(url, repo, "v1").status_code == 200   # a pull
    assert requests.delete(oh.manifest_url(url, repo, "v2"), timeout=30).status_code == 202
    assert requests.delete(oh.manifest_url(url, repo, index.digest),
                           timeout=30).status_code == 202
    # DeleteRepository (ECR API, force): a delete event for each manifest it held.
    gone = oh.push_image(url, "events/gone", "v1")
    ecr_client(url, *server.admin_credentials).delete_repository(
        repositoryName="events/gone", force=True)

    expected = {("push", first.digest, "v1"), ("push", second.digest, "v2"),
                ("push", index.digest, "multi"), ("push", first.digest, "stable"),
                ("pull", first.digest, "v1"), ("delete", second.digest, "v2"),
                ("delete", index.digest, None)}
    elsewhere = {("push", gone.digest, "v1"), ("delete", gone.digest, None)}
    expected_repos = {first.digest: repo, second.digest: repo, index.digest: repo,
                      gone.digest: "events/gone"}
    receiver.wait_for(lambda: len(receiver.accepted_on("/dist")) >= len(expected) + 2
                      and len(receiver.accepted_on("/ecr")) >= len(expected) + 1)

    dist = events_of(receiver, "/dist")
    assert len({event["id"] for event in dist}) == len(dist) == len(expected) + 2
    assert {(e["action"], e["target"]["digest"], e["target"].get("tag")) for e in dist} \
        == expected | elsewhere
    sizes = {first.digest: first.size, second.digest: second.size, index.digest: index.size,
             gone.digest: gone.size}
    for event in dist:
        target = event["target"]
        assert target["repository"] == expected_repos[target["digest"]]
        assert target["size"] == sizes[target["digest"]]
        assert target["url"] == \
            f"{url}/v2/{target['repository']}/manifests/{target['digest']}"
        assert target["mediaType"] in (oh.OCI_MANIFEST, oh.OCI_INDEX)
        assert event["timestamp"].endswith("Z") and event["request"]["id"]
        assert {"addr", "instanceID"} <= set(event["source"])
    first_push = next(e for e in dist if e["target"].get("tag") == "v1" and
                      e["action"] == "push")
    assert first_push["request"]["id"] == "push-req-1"
    assert first_push["request"]["method"] == "PUT"
    for item in receiver.accepted_on("/dist"):
        assert item.headers["X-Team"] == "ops"
        assert item.headers["X-Cargohold-Signature"] == "sha256=" + hmac.new(
            SECRET.encode(), item.body, hashlib.sha256).hexdigest()

    ecr = [item.json for item in receiver.accepted_on("/ecr")]
    assert len({event["id"] for event in ecr}) == len(ecr) == len(expected) + 1
    for event in ecr:
        assert event["detail-type"] == "ECR Image Action" and event["source"] == "aws.ecr"
        detail = event["detail"]
        assert detail["result"] == "SUCCESS"
        assert detail["repository-name"] == expected_repos[detail["image-digest"]]
        assert detail["manifest-media-type"] in (oh.OCI_MANIFEST, oh.OCI_INDEX)
        assert detail["artifact-media-type"]
    assert {(e["detail"]["action-type"], e["detail"]["image-digest"],
             e["detail"].get("image-tag")) for e in ecr} == {
        ("PUSH" if action != "delete" else "DELETE", digest, tag)
        for action, digest, tag in expected | elsewhere if action != "pull"}
    assert not receiver.accepted_on("/elsewhere")

    def listed_once_settled() -> list[dict[str, Any]]:
        """`events list` once every delivery is recorded as delivered. A dispatcher records
        its outcomes at its next poll (up to POLL_SECONDS after the receiver has the event),
        so a listing right after the receiver's last event may still show some pending."""
        deadline = time.monotonic() + 30
        while True:
            listed = json.loads(cli(server.data_dir, "events", "list", "--since", "1h", "-o",
                                    "json", env=database_env))
            settled = all(d["status"] == "delivered" for e in listed for d in e["deliveries"])
            if settled or time.monotonic() > deadline:
                return listed
            time.sleep(0.3)

    listed = listed_once_settled()
    assert {(e["action"], e["digest"], e["tag"]) for e in listed} >= expected - {
        ("push", first.digest, "stable")} | {("tag", first.digest, "stable")}
    for event in listed:
        consumers = {d["consumer"] for d in event["deliveries"]}
        assert "elsewhere" not in consumers
        assert all(d["status"] == "delivered" for d in event["deliveries"]), event

    # `events tail` prints a new push as it happens.
    tail = subprocess.Popen([sys.executable, "-m", "cargohold", "events", "tail", "--since",
                             "1m", "--data-dir", str(server.data_dir)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **database_env})
    try:
        third = oh.push_image(url, repo, "v3")
        assert tail.stdout is not None
        for line in tail.stdout:
            if json.loads(line)["digest"] == third.digest:
                break
    finally:
        tail.kill()
        tail.wait()


def test_event_is_delivered_after_kill_9_and_restart(
        make_registry: Callable[..., Any], tmp_path: Path,
        database_env: dict[str, str]) -> None:
    receiver = Receiver()  # not started yet: nothing can be delivered before the kill
    config = write_config(tmp_path / "events.toml", [
        {"name": "later", "url": receiver.url("/hook")}], backoff_initial=0.2,
        backoff_max=1.0)
    server = make_registry(["--config", str(config), "--workers", "2"], env=database_env)
    image = oh.push_image(server.url, "crash/app", "v1")
    server.stop(signal.SIGKILL)
    receiver.start()
    try:
        server.start()
        receiver.wait_for(lambda: any(e["target"]["digest"] == image.digest
                                      for e in events_of(receiver, "/hook")))
        assert [e["action"] for e in events_of(receiver, "/hook")] == ["push"]
    finally:
        receiver.stop()


def test_failing_and_hanging_endpoints_are_retried(
        make_registry: Callable[..., Any], receiver: Receiver, tmp_path: Path) -> None:
    receiver.behaviour = lambda path, attempt: (
        "hang" if path == "/hang" else 500 if attempt <= 2 else 200)
    config = write_config(tmp_path / "events.toml", [
        {"name": "flaky", "url": receiver.url("/flaky")},
        {"name": "hang", "url": receiver.url("/hang"), "timeout": 0.5},
        {"name": "dead", "url": f"http://127.0.0.1:{free_port()}/gone"},
    ], backoff_initial=0.2, backoff_max=1.0)
    server = make_registry(["--config", str(config), "--workers", "2"])
    images = [oh.push_image(server.url, "flaky/app", f"v{i}") for i in range(3)]
    digests = {image.digest for image in images}

    receiver.wait_for(lambda: {e["target"]["digest"] for e in events_of(receiver, "/flaky")}
                      == digests)
    flaky = [item for item in receiver.received if item.path == "/flaky"]
    assert len(flaky) == 9  # each event: two 500s, then accepted
    assert len(events_of(receiver, "/flaky")) == 3
    # The hanging endpoint is tried again after each timeout.
    receiver.wait_for(lambda: sum(item.path == "/hang" for item in receiver.received) >= 4)

    def settled() -> bool:
        samples = scrape(server.url)
        return (value(samples, "cargohold_event_deliveries_total", endpoint="flaky",
                      result="delivered") == 3
                and value(samples, "cargohold_event_deliveries_total", endpoint="dead",
                          result="failed") >= 3
                and value(samples, "cargohold_event_queue_depth", endpoint="hang") == 3
                and value(samples, "cargohold_event_queue_depth", endpoint="flaky") == 0)

    receiver.wait_for(settled)
    # Pushes still answer while two endpoints fail.
    assert oh.push_image(server.url, "flaky/app", "v9").digest


@pytest.mark.parametrize(("endpoint", "message"), [
    ({"url": "ftp://example.com/hook"}, "is not an http(s) URL"),
    ({"url": "not a url"}, "is not an http(s) URL"),
    ({"url": "http://example.com/", "events": ["push", "explode"]}, "explode"),
    ({"url": "http://example.com/", "format": "cloudevents"}, "'distribution' or 'ecr'"),
    ({"url": "http://example.com/", "colour": "red"}, "colour"),
])
def test_bad_notification_configuration_is_refused_at_start(
        tmp_path: Path, endpoint: dict[str, Any], message: str) -> None:
    config = write_config(tmp_path / "bad.toml", [endpoint])
    result = subprocess.run(
        [sys.executable, "-m", "cargohold", "serve", "--config", str(config), "--port",
         str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "notifications" in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()
