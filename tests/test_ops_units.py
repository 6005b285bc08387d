"""Units of the operations code with no server: artifact kinds, endpoint filters, event
formats and signatures, retry backoff, settings validation."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from pydantic import ValidationError

from cargohold.config_notifications import NotificationEndpoint, NotificationSettings
from cargohold.services.events import wants
from cargohold.services.events.formats import render, signature
from cargohold.services.metrics import artifact_kind, artifact_kind_of
from cargohold.storage.events import Change

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize(("media_type", "artifact_type", "config", "kind"), [
    (OCI_MANIFEST, None, "application/vnd.oci.image.config.v1+json", "image"),
    ("application/vnd.docker.distribution.manifest.v2+json", None,
     "application/vnd.docker.container.image.v1+json", "image"),
    (OCI_INDEX, None, None, "index"),
    (OCI_MANIFEST, None, "application/vnd.cncf.helm.config.v1+json", "helm"),
    (OCI_MANIFEST, None, "application/vnd.cncf.openpolicyagent.config.v1+json", "opa"),
    (OCI_MANIFEST, "application/spdx+json", "application/vnd.oci.empty.v1+json", "sbom"),
    (OCI_MANIFEST, "application/vnd.dev.cosign.artifact.sig.v1+json", None, "signature"),
    (OCI_MANIFEST, "application/vnd.in-toto+json", None, "attestation"),
    (OCI_MANIFEST, "application/x-anything", None, "other"),
])
def test_artifact_kinds(media_type: str, artifact_type: str | None, config: str | None,
                        kind: str) -> None:
    assert artifact_kind(media_type, artifact_type, config) == kind


def test_artifact_kind_of_stored_manifest_bytes() -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.cncf.helm.config.v1+json"}}).encode()
    assert artifact_kind_of("sha256:" + "1" * 64, OCI_MANIFEST, body) == "helm"
    assert artifact_kind_of("sha256:" + "2" * 64, OCI_MANIFEST, b"[not json") == "image"


def test_endpoint_filters() -> None:
    endpoint = NotificationEndpoint(url="http://example.com/hook", events=["push", "delete"],
                                    repositories=["team/*"],
                                    media_types=["application/vnd.cncf.helm.*"])
    helm = Change("push", "team/chart", "sha256:" + "a" * 64, OCI_MANIFEST, 10, "1.0",
                  "application/vnd.cncf.helm.config.v1+json")
    assert wants(endpoint, helm)
    assert not wants(endpoint, Change("pull", "team/chart", media_type=OCI_MANIFEST,
                                      artifact_type="application/vnd.cncf.helm.config.v1+json"))
    assert not wants(endpoint, Change("push", "other/chart", media_type=OCI_MANIFEST,
                                      artifact_type="application/vnd.cncf.helm.config.v1+json"))
    assert not wants(endpoint, Change("push", "team/app", media_type=OCI_MANIFEST))
    assert endpoint.label == "example.com/hook"


def _data(action: str) -> dict[str, object]:
    return {"id": "e-1", "at": 1_700_000_000_000_000, "action": action,
            "repository": "team/app", "digest": "sha256:" + "b" * 64,
            "media_type": OCI_MANIFEST, "size": 42, "tag": "v1", "artifact_type": None,
            "context": {"base_url": "https://reg.example", "request": {"id": "r-1"},
                        "actor": {"name": "alice"}}}


@pytest.mark.parametrize(("action", "distribution", "ecr"), [
    ("push", "push", "PUSH"), ("tag", "push", "PUSH"), ("delete", "delete", "DELETE"),
    ("pull", "pull", "PULL"), ("lifecycle", "delete", "DELETE")])
def test_formats(action: str, distribution: str, ecr: str) -> None:
    source = {"addr": "reg:5000", "instanceID": "123456789012"}
    body, content_type = render("distribution", _data(action), source, "eu-west-1",
                                "123456789012")
    assert content_type == "application/vnd.docker.distribution.events.v1+json"
    event = json.loads(body)["events"][0]
    assert event["action"] == distribution and event["id"] == "e-1"
    assert event["timestamp"] == "2023-11-14T22:13:20Z"
    assert event["target"] == {
        "mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 42, "length": 42,
        "repository": "team/app", "tag": "v1",
        "url": "https://reg.example/v2/team/app/manifests/sha256:" + "b" * 64}
    assert event["request"] == {"id": "r-1"} and event["actor"] == {"name": "alice"}
    assert event["source"] == source

    body, content_type = render("ecr", _data(action), source, "eu-west-1", "123456789012")
    assert content_type == "application/json"
    event = json.loads(body)
    assert event["detail-type"] == "ECR Image Action" and event["source"] == "aws.ecr"
    assert event["account"] == "123456789012" and event["region"] == "eu-west-1"
    assert event["time"] == "2023-11-14T22:13:20Z"
    assert event["resources"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/team/app"]
    assert event["detail"] == {
        "result": "SUCCESS", "repository-name": "team/app", "image-digest": "sha256:" + "b" * 64,
        "action-type": ecr, "manifest-media-type": OCI_MANIFEST,
        "artifact-media-type": OCI_MANIFEST, "image-tag": "v1"}


def test_signature_is_an_hmac_of_the_body() -> None:
    body = b'{"events": []}'
    expected = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, body) == f"sha256={expected}"


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    from cargohold.services.events.dispatcher import Dispatcher

    settings = NotificationSettings(backoff_initial=1.0, backoff_max=30.0)
    dispatcher = Dispatcher(None, settings, region="r", account="a", source={})  # type: ignore[arg-type]
    for attempts in range(12):
        delay = dispatcher.backoff(attempts)
        ceiling = min(30.0, 2.0 ** attempts)
        assert ceiling / 2 <= delay <= ceiling
    assert 15.0 <= dispatcher.backoff(10_000) <= 30.0  # no overflow after days of failures


@pytest.mark.parametrize("endpoint", [
    {"url": "http://:80/x"}, {"url": "http://host:99999/"}, {"url": "//host/x"},
    {"url": "http://h/", "timeout": 0}, {"url": "http://h/", "secret": "short"},
    {"url": "http://h/", "name": "has space"},
])
def test_bad_endpoints_are_refused(endpoint: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NotificationEndpoint.model_validate(endpoint)


def test_endpoints_need_distinct_names() -> None:
    with pytest.raises(ValidationError, match="share a name"):
        NotificationSettings.model_validate({"endpoints": [
            {"url": "http://h/hook"}, {"url": "http://h/hook", "events": ["pull"]}]})
