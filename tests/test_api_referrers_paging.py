"""The referrers API a page at a time: 2,500 referrers of one subject come back in pages of at
most 1,000 descriptors, each linked to the next with `Link: <…>; rel="next"`, and the
artifactType filter (with `OCI-Filters-Applied`) holds across pages."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from ocihelpers import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    TIMEOUT,
    assert_error,
    descriptor,
    digest_of,
    push_blob,
    push_image,
    requires_cargohold,
)

pytestmark = requires_cargohold

TOTAL = 2500
PAGE = 1000
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
WORKERS = 4


def _type_of(index: int) -> str:
    return SIGNATURE if index % 5 == 0 else SBOM  # 500 signatures, 2,000 SBOMs


def _referrer(subject: dict[str, Any], index: int) -> bytes:
    empty = descriptor(OCI_EMPTY, EMPTY_JSON)
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "artifactType": _type_of(index), "config": empty, "layers": [empty],
                       "subject": subject,
                       "annotations": {"org.example.n": str(index)}}).encode()


def _push_all(base: str, repo: str, bodies: list[bytes]) -> None:
    """PUT the manifests over a few pooled keep-alive connections."""
    def put(chunk: list[bytes]) -> None:
        with requests.Session() as session:
            for body in chunk:
                resp = session.put(f"{base}/v2/{repo}/manifests/{digest_of(body)}", data=body,
                                   headers={"Content-Type": OCI_MANIFEST}, timeout=TIMEOUT)
                assert resp.status_code == 201, (resp.status_code, resp.content[:300])

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(put, [bodies[i::WORKERS] for i in range(WORKERS)]))


def _next(resp: requests.Response) -> str | None:
    header = resp.headers.get("Link")
    if header is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', header)
    assert match, f"malformed Link header {header!r}"
    return match.group(1)


def _walk(base: str, first: str) -> tuple[list[dict[str, Any]], list[requests.Response]]:
    descriptors: list[dict[str, Any]] = []
    pages: list[requests.Response] = []
    path: str | None = first
    with requests.Session() as session:
        while path is not None:
            assert len(pages) < 10, "the pages never end"
            resp = session.get(base + path, timeout=TIMEOUT)
            assert resp.status_code == 200, (resp.status_code, resp.content[:300])
            assert resp.headers["Content-Type"] == OCI_INDEX
            body = resp.json()
            assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
            assert len(body["manifests"]) <= PAGE
            descriptors += body["manifests"]
            pages.append(resp)
            path = _next(resp)
    return descriptors, pages


def test_2500_referrers_come_back_in_linked_pages(registry_url: str, repo: str) -> None:
    subject = push_image(registry_url, repo, "v1")
    push_blob(registry_url, repo, EMPTY_JSON)
    bodies = [_referrer(subject.descriptor(), index) for index in range(TOTAL)]
    _push_all(registry_url, repo, bodies)
    expected = {digest_of(body): json.loads(body) for body in bodies}

    descriptors, pages = _walk(registry_url, f"/v2/{repo}/referrers/{subject.digest}")
    assert [len(p.json()["manifests"]) for p in pages] == [1000, 1000, 500]
    assert "OCI-Filters-Applied" not in pages[0].headers
    assert len({d["digest"] for d in descriptors}) == TOTAL, "a referrer was repeated or lost"
    for item in descriptors:
        document = expected[item["digest"]]
        assert item["mediaType"] == OCI_MANIFEST
        assert item["artifactType"] == document["artifactType"]
        assert item["annotations"] == document["annotations"]
        assert item["size"] == len(json.dumps(document).encode())

    # The filter holds across pages, and every page says it was applied.
    descriptors, pages = _walk(registry_url,
                               f"/v2/{repo}/referrers/{subject.digest}?artifactType={SBOM}")
    assert [len(p.json()["manifests"]) for p in pages] == [1000, 1000]
    assert all(p.headers.get("OCI-Filters-Applied") == "artifactType" for p in pages)
    assert all(f"artifactType={SBOM.replace('/', '%2F')}" in (_next(p) or "")
               for p in pages[:-1])
    assert {d["artifactType"] for d in descriptors} == {SBOM}
    assert len({d["digest"] for d in descriptors}) == 2000

    descriptors, pages = _walk(registry_url,
                               f"/v2/{repo}/referrers/{subject.digest}?artifactType={SIGNATURE}")
    assert len(pages) == 1 and _next(pages[0]) is None
    assert len(descriptors) == 500


def test_a_forged_page_cursor_is_refused(registry_url: str, repo: str) -> None:
    subject = push_image(registry_url, repo, "v1")
    for cursor in ("garbage", "WyJ4Il0=", "Wy0xXQ=="):  # not base64 JSON; ["x"]; [-1]
        resp = requests.get(f"{registry_url}/v2/{repo}/referrers/{subject.digest}",
                            params={"next": cursor}, timeout=TIMEOUT)
        assert_error(resp, 400)
