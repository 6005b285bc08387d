"""ECR ListImageReferrers: the referrers of a subject from the same data as `/v2` referrers,
with artifactTypes filtering, nextToken paging, the model's validation and its errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecrhelpers import (
    OCI_EMPTY,
    OCI_MANIFEST,
    SKIP_EXTERNAL,
    Artifact,
    Ecr,
    allow,
    canonical,
    descriptor,
    error_code,
    image,
    policy,
    start_ecr,
)

pytestmark = SKIP_EXTERNAL

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
COUNT = 45


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def referrer(subject: Artifact, artifact_type: str, n: int) -> Artifact:
    empty = b"{}"
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": descriptor(OCI_EMPTY, empty), "layers": [descriptor(OCI_EMPTY, empty)],
                "subject": descriptor(OCI_MANIFEST, subject.manifest),
                "annotations": {"org.example.n": str(n)}}
    return Artifact(canonical(document), [empty])


@pytest.fixture(scope="module")
def world(ecr: Ecr) -> dict[str, Any]:
    repo = ecr.new_repo("refs")
    subject = ecr.push(repo, image(), "v1")
    referrers = [ecr.push(repo, referrer(subject, SIGNATURE if n % 3 == 0 else SBOM, n))
                 for n in range(COUNT)]
    return {"repo": repo, "subject": subject, "referrers": referrers}


def list_all(client: Any, **params: Any) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    calls = 0
    token = None
    while True:
        calls += 1
        assert calls < 20
        page = client.list_image_referrers(**params, **({"nextToken": token} if token else {}))
        items += page["referrers"]
        token = page.get("nextToken")
        if not token:
            return items, calls


def test_referrers_with_paging_and_the_shape_of_each(ecr: Ecr, world: dict[str, Any]) -> None:
    subject = {"imageDigest": world["subject"].digest}
    first = ecr.client.list_image_referrers(repositoryName=world["repo"], subjectId=subject)
    assert len(first["referrers"]) == 20 and first["nextToken"]  # the documented default
    items, calls = list_all(ecr.client, repositoryName=world["repo"], subjectId=subject)
    assert calls == 3
    pushed = {r.digest: r for r in world["referrers"]}
    assert [i["digest"] for i in items] == list(pushed), "push order, each once"
    for item in items:
        document = json.loads(pushed[item["digest"]].manifest)
        assert item == {"digest": item["digest"], "mediaType": OCI_MANIFEST,
                        "artifactType": document["artifactType"],
                        "size": len(pushed[item["digest"]].manifest),
                        "annotations": document["annotations"], "artifactStatus": "ACTIVE"}
    items, calls = list_all(ecr.client, repositoryName=world["repo"], subjectId=subject,
                            maxResults=50)
    assert calls == 1 and len(items) == COUNT
    # The /v2 referrers API answers from the same data.
    resp = ecr.request("GET", f"/v2/{world['repo']}/referrers/{world['subject'].digest}")
    assert [d["digest"] for d in resp.json()["manifests"]] == list(pushed)


def test_artifact_type_and_status_filters(ecr: Ecr, world: dict[str, Any]) -> None:
    subject = {"imageDigest": world["subject"].digest}
    items, _ = list_all(ecr.client, repositoryName=world["repo"], subjectId=subject,
                        filter={"artifactTypes": [SIGNATURE]}, maxResults=7)
    assert len(items) == 15 and {i["artifactType"] for i in items} == {SIGNATURE}
    items, _ = list_all(ecr.client, repositoryName=world["repo"], subjectId=subject,
                        filter={"artifactTypes": [SIGNATURE, SBOM, "application/x.none"]})
    assert len(items) == COUNT
    for status, expected in (("ANY", COUNT), ("ACTIVE", COUNT), ("ARCHIVED", 0),
                             ("ACTIVATING", 0)):
        items, _ = list_all(ecr.client, repositoryName=world["repo"], subjectId=subject,
                            filter={"artifactStatus": status})
        assert len(items) == expected, status
    # A subject without referrers, and one never pushed: an empty list.
    for digest in (world["referrers"][0].digest, "sha256:" + "0" * 64):
        page = ecr.client.list_image_referrers(repositoryName=world["repo"],
                                               subjectId={"imageDigest": digest})
        assert page["referrers"] == [] and "nextToken" not in page


def test_errors_of_the_model(ecr: Ecr, world: dict[str, Any]) -> None:
    subject = {"imageDigest": world["subject"].digest}
    before = ecr.snapshot()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"repositoryName": f"refs/{uuid.uuid4().hex[:8]}", "subjectId": subject},
         "RepositoryNotFoundException"),
        ({"repositoryName": world["repo"], "subjectId": {"imageDigest": "sha256:xyz"}},
         "InvalidParameterException"),
        ({"repositoryName": world["repo"], "subjectId": subject, "maxResults": 51},
         "InvalidParameterException"),
        ({"repositoryName": world["repo"], "subjectId": subject, "nextToken": "forged"},
         "InvalidParameterException"),
        ({"repositoryName": world["repo"], "subjectId": subject,
          "filter": {"artifactTypes": [f"t/{n}" for n in range(6)]}},
         "InvalidParameterException"),
        ({"repositoryName": world["repo"], "subjectId": subject,
          "filter": {"artifactTypes": ["x" * 256]}}, "InvalidParameterException"),
        ({"repositoryName": world["repo"], "subjectId": subject,
          "registryId": "000000000000"}, "InvalidParameterException"),
    ]
    for params, expected in cases:
        with pytest.raises(ClientError) as caught:
            ecr.client.list_image_referrers(**params)
        assert error_code(caught.value) == expected, params
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ecr.snapshot() == before


def test_needs_batch_get_image_as_ecr_documents(ecr: Ecr, world: dict[str, Any]) -> None:
    arn = f"arn:aws:ecr:us-east-1:{ecr.registry_id}:repository/{world['repo']}"
    subject = {"imageDigest": world["subject"].digest}
    reader = ecr.client_for(*ecr.create_user(f"refs-{uuid.uuid4().hex[:8]}",
                                             policy(allow("ecr:BatchGetImage", arn))))
    page = reader.list_image_referrers(repositoryName=world["repo"], subjectId=subject)
    assert len(page["referrers"]) == 20
    other = ecr.client_for(*ecr.create_user(f"refs-{uuid.uuid4().hex[:8]}",
                                            policy(allow("ecr:DescribeImages", arn))))
    with pytest.raises(ClientError) as caught:
        other.list_image_referrers(repositoryName=world["repo"], subjectId=subject)
    assert error_code(caught.value) == "AccessDeniedException"
    assert "ecr:BatchGetImage" in caught.value.response["Error"]["Message"]


def test_with_the_aws_cli(ecr: Ecr, world: dict[str, Any]) -> None:
    out = ecr.aws("list-image-referrers", "--repository-name", world["repo"],
                  "--subject-id", f"imageDigest={world['subject'].digest}",
                  "--filter", f"artifactTypes={SIGNATURE}", "--max-results", "50",
                  "--output", "json")
    items = json.loads(out.stdout)["referrers"]
    assert len(items) == 15 and {i["artifactType"] for i in items} == {SIGNATURE}
