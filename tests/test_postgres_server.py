"""The whole server on PostgreSQL: the same behaviour as on the embedded SQLite default."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from dbfixtures import postgres_available, postgres_database
from ocihelpers import (
    EXTERNAL,
    assert_blob,
    build_image,
    build_index,
    push,
    push_image,
    tags_of,
)

pytestmark = [
    pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers"),
    pytest.mark.skipif(not os.environ.get("CI") and not postgres_available(),
                       reason="PostgreSQL not reachable"),
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def test_push_pull_tags_and_referrers_on_postgres(make_registry, postgres_url: str) -> None:
    server = make_registry(["--workers", "2"], env={"CARGOHOLD_DATABASE_URL": postgres_url})
    base, repo = server.url, "pg/app"
    first = push_image(base, repo, "v1")
    second = push_image(base, repo, "v2")
    index = push(base, repo, build_index([first, second]), "multi")
    assert tags_of(base, repo) == ["multi", "v1", "v2"]
    for digest, data in first.blobs.items():
        assert_blob(base, repo, digest, data)
    resp = requests.get(f"{base}/v2/{repo}/manifests/multi", timeout=30,
                        headers={"Accept": index.media_type})
    assert resp.status_code == 200 and resp.content == index.body
    referrer = build_image(base, repo, artifact_type="application/vnd.example.sbom+json",
                           subject=first.descriptor())
    push(base, repo, referrer)
    listed = requests.get(f"{base}/v2/{repo}/referrers/{first.digest}", timeout=30).json()
    assert [d["digest"] for d in listed["manifests"]] == [referrer.digest]
    # Tag order is byte-wise on PostgreSQL too (its default collation is not).
    for tag in ("B", "a", "_z"):
        push(base, repo, first, tag)
    assert tags_of(base, repo) == sorted(["multi", "v1", "v2", "B", "a", "_z"])
    catalog = requests.get(f"{base}/v2/_catalog", timeout=30).json()
    assert repo in catalog["repositories"]


def test_restart_keeps_everything_on_postgres(make_registry, postgres_url: str) -> None:
    server = make_registry(env={"CARGOHOLD_DATABASE_URL": postgres_url})
    image = push_image(server.url, "pg/restart", "kept")
    server.restart()
    resp = requests.get(f"{server.url}/v2/pg/restart/manifests/kept", timeout=30,
                        headers={"Accept": image.media_type})
    assert resp.status_code == 200 and resp.content == image.body
