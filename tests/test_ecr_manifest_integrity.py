"""ECR `PutImage` with manifests that disagree with what they reference or parse more than one
way (the cases of `manifestcases.CASES`), through boto3 against a secure Cargohold.

Each is refused with the ECR exception for the `/v2` code (MANIFEST_INVALID is
InvalidParameterException; unknown layers and images keep their own exceptions), with a message
naming the descriptor, and changes nothing: the tag keeps its digest, ListImages,
DescribeImages and the referrers are as before, and no repository is created.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecrhelpers import SKIP_EXTERNAL, Ecr, describe, error_code, start_ecr, unique
from manifestcases import (
    CASES,
    OCI_INDEX,
    OCI_MANIFEST,
    Case,
    Seed,
    encode,
    make_seed,
    populate,
    sha256,
)

pytestmark = SKIP_EXTERNAL

ECR_EXCEPTIONS = {
    "unknown-layer": "LayersNotFoundException",
    "unknown-index-child": "ReferencedImagesNotFoundException",
}


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


@pytest.fixture(scope="module")
def seeded(ecr: Ecr) -> tuple[str, Seed]:
    repo = ecr.new_repo("integrity")
    seed = make_seed()

    def put(ref: str, body: bytes, media_type: str) -> None:
        resp = ecr.put_manifest(repo, ref, body, media_type)
        assert resp.status_code == 201, describe(resp)

    populate(seed, lambda blob: ecr.push_blob(repo, blob), put)
    return repo, seed


def image_ids(ecr: Ecr, repo: str) -> list[tuple[str, str]]:
    ids = []
    for page in ecr.client.get_paginator("list_images").paginate(repositoryName=repo):
        ids += [(i["imageDigest"], i.get("imageTag", "")) for i in page["imageIds"]]
    return sorted(ids)


def referrers(ecr: Ecr, repo: str, digest: str) -> list[str]:
    resp = ecr.request("GET", f"/v2/{repo}/referrers/{digest}")
    assert resp.status_code == 200, describe(resp)
    return sorted(d["digest"] for d in resp.json()["manifests"])


def tag_digest(ecr: Ecr, repo: str, tag: str) -> str:
    images = ecr.client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
    return str(images["images"][0]["imageId"]["imageDigest"])


def state(ecr: Ecr, repo: str, seed: Seed) -> dict[str, Any]:
    return {"registry": ecr.snapshot(), "images": image_ids(ecr, repo),
            "keep": tag_digest(ecr, repo, "keep"), "index": tag_digest(ecr, repo, "index"),
            "referrers": referrers(ecr, repo, sha256(seed.image))}


def put_image(ecr: Ecr, repo: str, body: bytes, media_type: str | None,
              **ids: str) -> dict[str, Any]:
    params: dict[str, Any] = {"repositoryName": repo, "imageManifest": body.decode(), **ids}
    if media_type is not None:
        params["imageManifestMediaType"] = media_type
    return dict(ecr.client.put_image(**params))


def expected_exception(case: Case) -> str:
    return ECR_EXCEPTIONS.get(case.id, "InvalidParameterException")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_put_image_refused_changes_nothing(ecr: Ecr, seeded: tuple[str, Seed],
                                           case: Case) -> None:
    repo, seed = seeded
    before = state(ecr, repo, seed)
    assert before["keep"] == sha256(seed.image)
    body, media_type = case.build(seed)
    tag = "index" if media_type == OCI_INDEX else "keep"
    for ids in ({"imageTag": tag}, {"imageTag": "fresh"}, {"imageDigest": sha256(body)}, {}):
        with pytest.raises(ClientError) as exc:
            put_image(ecr, repo, body, media_type, **ids)
        assert error_code(exc.value) == expected_exception(case), exc.value.response
        if case.names and case.code == "MANIFEST_INVALID":
            assert case.names in exc.value.response["Error"]["Message"], exc.value.response
    assert state(ecr, repo, seed) == before


@pytest.mark.parametrize("case", [c for c in CASES if c.id in (
    "layer-size-plus-1", "duplicate-layers-key", "byte-order-mark", "schema1",
    "unknown-layer")], ids=lambda c: c.id)
def test_put_image_into_missing_repository_creates_nothing(
        ecr: Ecr, seeded: tuple[str, Seed], case: Case) -> None:
    _, seed = seeded
    body, media_type = case.build(seed)
    missing = unique("integrity-missing")
    before = ecr.snapshot()
    with pytest.raises(ClientError) as exc:
        put_image(ecr, missing, body, media_type, imageTag="v1")
    assert error_code(exc.value) == "RepositoryNotFoundException"
    assert ecr.snapshot() == before
    assert missing not in before


def test_put_image_with_exact_sizes_is_accepted(ecr: Ecr, seeded: tuple[str, Seed]) -> None:
    repo, seed = seeded
    body = encode(seed.image_doc())
    result = put_image(ecr, repo, body, OCI_MANIFEST, imageTag="exact")
    assert result["image"]["imageId"] == {"imageDigest": sha256(body), "imageTag": "exact"}
    assert tag_digest(ecr, repo, "exact") == sha256(body)
