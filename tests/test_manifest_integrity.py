"""`/v2` manifest pushes must agree with what they reference and parse one way only.

Every case of `manifestcases.CASES` is pushed onto an existing tag, by digest, and into a
repository that does not exist yet. Each is refused with the expected code and a detail naming
the descriptor, and changes nothing: the tag still points at its old manifest, no manifest,
tag, referrer or repository appears.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from manifestcases import (
    ARTIFACT,
    CASES,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Case,
    Seed,
    descriptor,
    encode,
    error_text,
    make_seed,
    populate,
    sha256,
)
from ocihelpers import (
    assert_error,
    get_manifest,
    push_blob,
    put_manifest,
    request,
    requires_cargohold,
    tags_of,
)

pytestmark = requires_cargohold


@dataclass
class Seeded:
    repo: str
    seed: Seed


def _put(base: str, repo: str) -> Any:
    def put(ref: str, body: bytes, media_type: str) -> None:
        resp = put_manifest(base, repo, ref, body, media_type)
        assert resp.status_code == 201, (resp.status_code, resp.content[:300])
    return put


@pytest.fixture(scope="module")
def seeded(registry_url: str) -> Seeded:
    repo = f"integrity/{uuid.uuid4().hex[:10]}"
    seed = make_seed()
    populate(seed, lambda blob: push_blob(registry_url, repo, blob), _put(registry_url, repo))
    return Seeded(repo, seed)


def referrers(base: str, repo: str, digest: str) -> list[str]:
    resp = request("GET", f"{base}/v2/{repo}/referrers/{digest}")
    assert resp.status_code == 200, resp.content[:300]
    return sorted(d["digest"] for d in resp.json()["manifests"])


def catalog(base: str) -> list[str]:
    resp = request("GET", f"{base}/v2/_catalog?n=10000")
    assert resp.status_code == 200
    return list(resp.json()["repositories"])


def state(base: str, seeded: Seeded) -> dict[str, Any]:
    seed = seeded.seed
    return {
        "keep": get_manifest(base, seeded.repo, "keep").content,
        "index": get_manifest(base, seeded.repo, "index").content,
        "tags": tags_of(base, seeded.repo),
        "referrers": referrers(base, seeded.repo, sha256(seed.image)),
    }


def assert_refused(resp: Any, case: Case) -> None:
    assert_error(resp, 400, case.code)
    if case.names:
        assert case.names in error_text(resp.json()), resp.json()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_push_changes_nothing(registry_url: str, seeded: Seeded, case: Case) -> None:
    before = state(registry_url, seeded)
    assert before["keep"] == seeded.seed.image
    body, media_type = case.build(seeded.seed)
    target = "index" if media_type == OCI_INDEX else "keep"
    for ref in (target, "fresh", sha256(body)):
        assert_refused(put_manifest(registry_url, seeded.repo, ref, body, media_type), case)
    assert state(registry_url, seeded) == before
    for ref in ("fresh", sha256(body)):
        assert get_manifest(registry_url, seeded.repo, ref, method="HEAD").status_code == 404
    subject = body.find(b'"subject"') >= 0
    if subject:  # the referrer must not be listed under its subject
        assert sha256(body) not in referrers(registry_url, seeded.repo, sha256(seeded.seed.image))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_push_creates_no_repository(registry_url: str, seeded: Seeded,
                                            case: Case) -> None:
    body, media_type = case.build(seeded.seed)
    fresh = f"integrity-new/{uuid.uuid4().hex[:10]}"
    resp = put_manifest(registry_url, fresh, "v1", body, media_type)
    assert_error(resp, 400, ("MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN"))
    assert tags_of(registry_url, fresh) is None
    assert fresh not in catalog(registry_url)


def test_exact_sizes_are_accepted(registry_url: str, seeded: Seeded) -> None:
    body = encode(seeded.seed.image_doc())
    resp = put_manifest(registry_url, seeded.repo, "exact", body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.content[:300]
    index = encode(seeded.seed.index_doc())
    resp = put_manifest(registry_url, seeded.repo, "exact-index", index, OCI_INDEX)
    assert resp.status_code == 201, resp.content[:300]


def test_referrer_may_arrive_before_its_subject(registry_url: str, seeded: Seeded) -> None:
    # The subject is not stored, so its size cannot be checked: the spec allows this order.
    absent = encode({"nonce": uuid.uuid4().hex})
    doc = seeded.seed.image_doc()
    doc["artifactType"] = ARTIFACT
    doc["subject"] = {**descriptor(OCI_MANIFEST, absent), "size": 12345}
    body = encode(doc)
    resp = put_manifest(registry_url, seeded.repo, sha256(body), body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.content[:300]
    assert resp.headers.get("OCI-Subject") == sha256(absent)
    assert referrers(registry_url, seeded.repo, sha256(absent)) == [sha256(body)]


def test_duplicate_key_naming_a_missing_blob_is_not_read_either_way(
        registry_url: str, seeded: Seeded) -> None:
    # Swapped order: the real layers first, the missing one last. Refused all the same.
    missing = descriptor(OCI_LAYER, b"not uploaded " + uuid.uuid4().bytes)
    text = encode(seeded.seed.image_doc()).decode().rstrip().rstrip("}")
    body = (text + f', "layers": [{encode(missing).decode()}]}}').encode()
    resp = put_manifest(registry_url, seeded.repo, "dup", body, OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert get_manifest(registry_url, seeded.repo, "dup", method="HEAD").status_code == 404
