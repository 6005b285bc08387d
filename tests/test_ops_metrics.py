"""`/metrics`: Prometheus text from every worker, counters that follow real traffic, access
control with `metrics_token`, and `metrics = false`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import ocihelpers as oh

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **headers: str) -> Samples:
    response = requests.get(url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("cargohold_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every label set that includes `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_counters_follow_pushes_pulls_and_failed_logins_across_workers(
        make_registry: Callable[..., Any]) -> None:
    server = make_registry(["--workers", "2"])
    before = scrape(server.url)
    repo = "metrics/app"
    images = [oh.push_image(server.url, repo, f"v{i}") for i in range(3)]
    chart = oh.push_image(server.url, "metrics/chart", "0.1.0", config_media_type=HELM_CONFIG,
                          layer_media_type=HELM_LAYER)
    for image in images:
        for _ in range(3):
            assert oh.get_manifest(server.url, repo, image.digest).status_code == 200
    assert oh.get_manifest(server.url, "metrics/chart", "0.1.0").status_code == 200
    for _ in range(2):
        response = requests.get(server.url + "/v2/", auth=("nobody", "wrong"), timeout=30)
        assert response.status_code == 401
    # A failed upload: the digest does not match the bytes.
    upload = oh.open_upload(server.url, repo)
    assert oh.put_upload(upload, oh.sha256(b"other"), b"data").status_code == 400

    after = scrape(server.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cargohold_manifests_pushed_total", kind="image") == 3
    assert moved("cargohold_manifests_pushed_total", kind="helm") == 1
    assert moved("cargohold_manifests_pulled_total", kind="image") == 9
    assert moved("cargohold_manifests_pulled_total", kind="helm") == 1
    assert moved("cargohold_auth_failures_total", status="401") == 2
    assert moved("cargohold_blob_uploads_total", outcome="started") == 9
    assert moved("cargohold_blob_uploads_total", outcome="completed") == 8
    assert moved("cargohold_blob_uploads_total", outcome="failed") == 1
    manifest_route = "/v2/{name}/manifests/{reference}"
    assert moved("cargohold_http_requests_total", route=manifest_route, method="PUT",
                 status="201") == 4
    assert moved("cargohold_http_requests_total", route=manifest_route, method="GET",
                 status="200") == 10
    assert total(after, "cargohold_http_request_duration_seconds_count",
                 route=manifest_route, method="GET") >= 10
    assert value(after, "cargohold_http_received_bytes_total", route=manifest_route) >= sum(
        len(m.body) for m in [*images, chart])
    assert value(after, "cargohold_http_sent_bytes_total", route=manifest_route) >= 9 * len(
        images[0].body)
    # Route templates, never repository names, in labels.
    assert not any("metrics/" in label_value for (_, labels) in after
                   for _, label_value in labels)
    assert value(after, "cargohold_health", component="database") == 1
    assert value(after, "cargohold_health", component="blob_store") == 1
    # Stored totals are cached for a few seconds per worker: poll until they catch up.
    deadline = time.monotonic() + 60
    while value(after, "cargohold_repositories") != 2 and time.monotonic() < deadline:
        time.sleep(1)
        after = scrape(server.url)
    assert value(after, "cargohold_repositories") == 2
    assert value(after, "cargohold_manifests") == 4
    assert value(after, "cargohold_blobs") >= 8
    assert value(after, "cargohold_stored_bytes") > 0
    assert moved("cargohold_events_recorded_total", action="push") == 4


def test_metrics_token_and_switch(make_registry: Callable[..., Any]) -> None:
    token = "s3cret-metrics-token-0123456789"
    server = make_registry(env={"CARGOHOLD_METRICS_TOKEN": token})
    assert requests.get(server.url + "/metrics", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all-000"}
    assert requests.get(server.url + "/metrics", headers=wrong, timeout=30).status_code == 401
    assert scrape(server.url, Authorization=f"Bearer {token}")
    assert token not in server.log()

    off = make_registry(env={"CARGOHOLD_METRICS": "false"})
    assert requests.get(off.url + "/metrics", timeout=30).status_code == 404
