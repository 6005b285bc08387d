"""Every operation of the ECR-compatible API (issue 4) through real boto3, against a secure
Cargohold: shapes and field names as botocore's model defines them, pagination with boto3's
paginators and by hand, every listed exception, and the bridges to `/v2` (tag immutability,
pull times, blobs pushed either way, download URLs, login passwords, create-on-push).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from ecrhelpers import (
    DOCKER_MANIFEST,
    HELM_CONFIG,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    REGION,
    SKIP_EXTERNAL,
    TIMEOUT,
    Artifact,
    Ecr,
    allow,
    basic_login,
    canonical,
    describe,
    descriptor,
    error_code,
    image,
    index_of,
    policy,
    poll,
    sha256,
    start_ecr,
    unique,
)

pytestmark = SKIP_EXTERNAL

MiB = 1024 * 1024
REGISTRY_ID = re.compile(r"^[0-9]{12}$")
UPLOAD_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{12}$")
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
        "ecr:ListImages"]


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def raises(code: str, call: Any, /, **kwargs: Any) -> ClientError:
    """Call a boto3 operation and require the ECR exception `code` (a 4xx)."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert error_code(info.value) == code, info.value.response
    status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert 400 <= status < 500, info.value.response
    assert info.value.response["Error"].get("Message"), info.value.response
    return info.value


def near_now(when: dt.datetime, slack: float = 120.0) -> bool:
    return abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < slack


def names_of(ids: list[dict[str, str]]) -> list[tuple[str, str | None]]:
    return sorted((i["imageDigest"], i.get("imageTag")) for i in ids)


# ============================================================================================
# Repositories
# ============================================================================================

def test_create_repository_stores_and_echoes_everything(ecr: Ecr) -> None:
    name = unique("create")
    tags = [{"Key": "team", "Value": "platform"}, {"Key": "cost-center", "Value": "42"}]
    filters = [{"filterType": "WILDCARD", "filter": "dev-*"},
               {"filterType": "WILDCARD", "filter": "latest"}]
    encryption = {"encryptionType": "KMS",
                  "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/abcd-1234"}
    created = ecr.client.create_repository(
        repositoryName=name, tags=tags, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters,
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration=encryption)["repository"]
    registry_id = created["registryId"]
    assert REGISTRY_ID.match(registry_id), created
    assert created["repositoryName"] == name
    assert created["repositoryArn"] == f"arn:aws:ecr:{REGION}:{registry_id}:repository/{name}"
    assert created["repositoryUri"] == f"{ecr.host}/{name}"
    assert near_now(created["createdAt"]), created
    assert created["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert created["imageTagMutabilityExclusionFilters"] == filters
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    assert created["encryptionConfiguration"] == encryption

    described = ecr.client.describe_repositories(repositoryNames=[name])["repositories"]
    assert described == [created]
    listed = ecr.client.list_tags_for_resource(resourceArn=created["repositoryArn"])["tags"]
    assert sorted(listed, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])
    assert ecr.client.describe_registry()["registryId"] == registry_id


def test_create_repository_defaults(ecr: Ecr) -> None:
    name = unique("defaults")
    repo = ecr.client.create_repository(repositoryName=name)["repository"]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert "imageTagMutabilityExclusionFilters" not in repo
    assert ecr.client.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == []


def test_create_repository_refusals(ecr: Ecr) -> None:
    name = ecr.new_repo("exists")
    raises("RepositoryAlreadyExistsException", ecr.client.create_repository,
           repositoryName=name)
    # Exclusion filters only go with a *_WITH_EXCLUSION mutability.
    raises("InvalidParameterException", ecr.client.create_repository,
           repositoryName=unique("filters"), imageTagMutability="IMMUTABLE",
           imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x*"}])
    # A KMS key needs a KMS encryption type.
    raises("InvalidParameterException", ecr.client.create_repository,
           repositoryName=unique("kms"),
           encryptionConfiguration={"encryptionType": "AES256", "kmsKey": "k"})
    # A name the model's pattern refuses (botocore checks lengths, not patterns).
    raises("InvalidParameterException", ecr.client.create_repository,
           repositoryName="Upper/Case")


def test_describe_repositories_by_name_and_not_found(ecr: Ecr) -> None:
    first, second = ecr.new_repo("byname"), ecr.new_repo("byname")
    got = ecr.client.describe_repositories(repositoryNames=[second, first])["repositories"]
    assert sorted(r["repositoryName"] for r in got) == sorted([first, second])
    raises("RepositoryNotFoundException", ecr.client.describe_repositories,
           repositoryNames=[first, unique("missing")])


def test_describe_repositories_pagination(ecr: Ecr) -> None:
    prefix = f"page{uuid.uuid4().hex[:6]}"
    mine = sorted(ecr.new_repo(prefix) for _ in range(7))
    # boto3's paginator, two per page
    seen: list[str] = []
    pages = 0
    for page in ecr.client.get_paginator("describe_repositories").paginate(
            PaginationConfig={"PageSize": 2}):
        pages += 1
        assert len(page["repositories"]) <= 2, page
        seen.extend(r["repositoryName"] for r in page["repositories"])
    assert len(seen) == len(set(seen)), "a repository was listed twice"
    assert set(mine) <= set(seen)
    assert pages >= 4
    # by hand: maxResults and nextToken
    manual: list[str] = []
    token: str | None = None
    for _ in range(1000):
        kwargs: dict[str, Any] = {"maxResults": 3}
        if token:
            kwargs["nextToken"] = token
        page = ecr.client.describe_repositories(**kwargs)
        assert len(page["repositories"]) <= 3
        manual.extend(r["repositoryName"] for r in page["repositories"])
        token = page.get("nextToken")
        if not token:
            break
    assert manual == seen
    # a repository list and pagination are exclusive
    raises("InvalidParameterException", ecr.client.describe_repositories,
           repositoryNames=[mine[0]], maxResults=2)
    raises("InvalidParameterException", ecr.client.describe_repositories,
           nextToken="not-a-token!")


def test_delete_repository(ecr: Ecr) -> None:
    empty = ecr.new_repo("delete")
    deleted = ecr.client.delete_repository(repositoryName=empty)["repository"]
    assert deleted["repositoryName"] == empty
    raises("RepositoryNotFoundException", ecr.client.describe_repositories,
           repositoryNames=[empty])
    raises("RepositoryNotFoundException", ecr.client.delete_repository, repositoryName=empty)

    full = ecr.new_repo("delete")
    pushed = ecr.push(full, image(), "v1")
    raises("RepositoryNotEmptyException", ecr.client.delete_repository, repositoryName=full)
    assert ecr.details(full).keys() == {pushed.digest}
    gone = ecr.client.delete_repository(repositoryName=full, force=True)["repository"]
    assert gone["repositoryName"] == full
    raises("RepositoryNotFoundException", ecr.client.describe_images, repositoryName=full)
    resp = ecr.request("GET", f"/v2/{full}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 404, describe(resp)


# -- tag mutability ---------------------------------------------------------------------------

def test_put_image_tag_mutability_immutable(ecr: Ecr) -> None:
    repo = ecr.new_repo("immutable")
    first, second = image(), image()
    ecr.push(repo, first, "v1")
    for blob in second.blobs:
        ecr.push_blob(repo, blob)
    answer = ecr.client.put_image_tag_mutability(repositoryName=repo,
                                                 imageTagMutability="IMMUTABLE")
    assert answer["imageTagMutability"] == "IMMUTABLE"
    assert answer["repositoryName"] == repo and REGISTRY_ID.match(answer["registryId"])
    described = ecr.client.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE"

    # /v2: moving an existing tag is refused with TAG_INVALID
    resp = ecr.put_manifest(repo, "v1", second.manifest)
    assert resp.status_code == 400, describe(resp)
    assert [e["code"] for e in resp.json()["errors"]] == ["TAG_INVALID"], describe(resp)
    # PutImage: ImageTagAlreadyExistsException
    raises("ImageTagAlreadyExistsException", ecr.client.put_image, repositoryName=repo,
           imageManifest=second.manifest.decode(), imageTag="v1")
    # the tag still names the first image; a new tag is fine; the same manifest again too
    got = ecr.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got.content == first.manifest, describe(got)
    assert ecr.put_manifest(repo, "v2", second.manifest).status_code == 201
    assert ecr.put_manifest(repo, "v1", first.manifest).status_code == 201
    tags = {d: sorted(x.get("imageTags", [])) for d, x in ecr.details(repo).items()}
    assert tags == {first.digest: ["v1"], second.digest: ["v2"]}

    # back to MUTABLE: the tag moves
    ecr.client.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    assert ecr.put_manifest(repo, "v1", second.manifest).status_code == 201
    got = ecr.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got.content == second.manifest


def test_put_image_tag_mutability_exclusions(ecr: Ecr) -> None:
    repo = ecr.new_repo("exclusions")
    first, second = image(), image()
    ecr.push(repo, first, "release-1", "dev-1", "other")
    for blob in second.blobs:
        ecr.push_blob(repo, blob)
    filters = [{"filterType": "WILDCARD", "filter": "dev-*"}]
    answer = ecr.client.put_image_tag_mutability(
        repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters)
    assert answer["imageTagMutabilityExclusionFilters"] == filters
    described = ecr.client.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert described["imageTagMutabilityExclusionFilters"] == filters
    # excluded: stays mutable; others: immutable
    assert ecr.put_manifest(repo, "dev-1", second.manifest).status_code == 201
    assert ecr.put_manifest(repo, "release-1", second.manifest).status_code == 400
    raises("ImageTagAlreadyExistsException", ecr.client.put_image, repositoryName=repo,
           imageManifest=second.manifest.decode(), imageTag="other")

    # MUTABLE_WITH_EXCLUSION: the excluded tags are the immutable ones
    ecr.client.put_image_tag_mutability(
        repositoryName=repo, imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}])
    assert ecr.put_manifest(repo, "release-1", second.manifest).status_code == 400
    assert ecr.put_manifest(repo, "other", second.manifest).status_code == 201
    raises("InvalidParameterException", ecr.client.put_image_tag_mutability,
           repositoryName=repo, imageTagMutability="MUTABLE",
           imageTagMutabilityExclusionFilters=filters)
    raises("RepositoryNotFoundException", ecr.client.put_image_tag_mutability,
           repositoryName=unique("missing"), imageTagMutability="IMMUTABLE")


def test_created_immutable_repository_refuses_moves(ecr: Ecr) -> None:
    repo = ecr.new_repo("created-immutable", imageTagMutability="IMMUTABLE")
    first, second = image(), image()
    ecr.push(repo, first, "v1")
    for blob in second.blobs:
        ecr.push_blob(repo, blob)
    resp = ecr.put_manifest(repo, "v1", second.manifest)
    assert resp.status_code == 400, describe(resp)
    assert resp.json()["errors"][0]["code"] == "TAG_INVALID"


def test_put_image_scanning_configuration(ecr: Ecr) -> None:
    repo = ecr.new_repo("scanning")
    answer = ecr.client.put_image_scanning_configuration(
        repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    assert answer["imageScanningConfiguration"] == {"scanOnPush": True}
    described = ecr.client.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}


# -- registry and resource tags ---------------------------------------------------------------

def test_describe_registry(ecr: Ecr) -> None:
    answer = ecr.client.describe_registry()
    assert REGISTRY_ID.match(answer["registryId"])
    assert answer["replicationConfiguration"] == {"rules": []}
    # the same id everywhere: ARNs and every registryId
    repo = ecr.client.create_repository(repositoryName=unique("regid"))["repository"]
    assert repo["registryId"] == answer["registryId"]
    assert repo["repositoryArn"].split(":")[4] == answer["registryId"]
    # a request naming this registry works, another registry is refused
    ecr.client.describe_repositories(registryId=answer["registryId"],
                                     repositoryNames=[repo["repositoryName"]])
    other = "999999999999" if answer["registryId"] != "999999999999" else "111111111111"
    with pytest.raises(ClientError) as info:
        ecr.client.describe_repositories(registryId=other,
                                         repositoryNames=[repo["repositoryName"]])
    assert error_code(info.value) in ("InvalidParameterException",
                                      "RepositoryNotFoundException")


def test_tag_untag_list_tags_for_resource(ecr: Ecr) -> None:
    name = unique("tags")
    arn = ecr.client.create_repository(
        repositoryName=name, tags=[{"Key": "a", "Value": "1"}])["repository"]["repositoryArn"]
    ecr.client.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "2"},
                                                   {"Key": "a", "Value": "one"}])
    tags = ecr.client.list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted(tags, key=lambda t: t["Key"]) == [{"Key": "a", "Value": "one"},
                                                     {"Key": "b", "Value": "2"}]
    ecr.client.untag_resource(resourceArn=arn, tagKeys=["a", "not-there"])
    assert ecr.client.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"Key": "b", "Value": "2"}]

    missing = arn.replace(name, unique("missing"))
    raises("RepositoryNotFoundException", ecr.client.list_tags_for_resource, resourceArn=missing)
    raises("RepositoryNotFoundException", ecr.client.tag_resource, resourceArn=missing,
           tags=[{"Key": "x", "Value": "y"}])
    raises("InvalidParameterException", ecr.client.list_tags_for_resource,
           resourceArn="arn:aws:s3:::bucket")
    raises("InvalidParameterException", ecr.client.tag_resource, resourceArn="nonsense",
           tags=[{"Key": "x", "Value": "y"}])


# ============================================================================================
# Images: DescribeImages, ListImages
# ============================================================================================

def test_describe_images_fields(ecr: Ecr) -> None:
    repo = ecr.new_repo("describe")
    pushed = ecr.push(repo, image(layer_size=3000), "v1", "latest")
    [detail] = ecr.client.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["registryId"] == ecr.registry_id
    assert detail["repositoryName"] == repo
    assert detail["imageDigest"] == pushed.digest
    assert sorted(detail["imageTags"]) == ["latest", "v1"]
    assert detail["imageSizeInBytes"] == pushed.size == (
        len(pushed.manifest) + sum(len(b) for b in pushed.blobs))
    assert near_now(detail["imagePushedAt"]), detail
    assert detail["imageManifestMediaType"] == OCI_MANIFEST
    assert detail["artifactMediaType"] == OCI_CONFIG
    assert "lastRecordedPullTime" not in detail
    assert "subjectManifestDigest" not in detail
    # the same detail through the paginator and the aws-style filter
    assert list(ecr.details(repo).values()) == [detail]


def test_describe_images_by_id(ecr: Ecr) -> None:
    repo = ecr.new_repo("byid")
    one = ecr.push(repo, image(), "one", "uno")
    two = ecr.push(repo, image(), "two")
    untagged = ecr.push(repo, image())

    def digests(**kwargs: Any) -> list[str]:
        details = ecr.client.describe_images(repositoryName=repo, **kwargs)["imageDetails"]
        return sorted(d["imageDigest"] for d in details)

    assert digests(imageIds=[{"imageTag": "uno"}]) == [one.digest]
    assert digests(imageIds=[{"imageDigest": two.digest}]) == [two.digest]
    assert digests(imageIds=[{"imageDigest": untagged.digest}]) == [untagged.digest]
    assert digests(imageIds=[{"imageTag": "one"}, {"imageDigest": one.digest},
                             {"imageTag": "two"}]) == sorted([one.digest, two.digest])
    assert digests(imageIds=[{"imageTag": "one", "imageDigest": one.digest}]) == [one.digest]
    raises("ImageNotFoundException", ecr.client.describe_images, repositoryName=repo,
           imageIds=[{"imageTag": "nope"}])
    raises("ImageNotFoundException", ecr.client.describe_images, repositoryName=repo,
           imageIds=[{"imageDigest": sha256(b"nothing")}])
    raises("RepositoryNotFoundException", ecr.client.describe_images,
           repositoryName=unique("missing"))


def test_describe_images_tag_status_filter(ecr: Ecr) -> None:
    repo = ecr.new_repo("filter")
    tagged = {ecr.push(repo, image(), f"t{i}").digest for i in range(3)}
    untagged = {ecr.push(repo, image()).digest for _ in range(2)}
    for status, want in (("TAGGED", tagged), ("UNTAGGED", untagged),
                         ("ANY", tagged | untagged)):
        assert set(ecr.details(repo, filter={"tagStatus": status})) == want, status
        listed = ecr.client.list_images(repositoryName=repo,
                                        filter={"tagStatus": status})["imageIds"]
        assert {i["imageDigest"] for i in listed} == want, status
    assert set(ecr.details(repo)) == tagged | untagged


def test_describe_and_list_images_pagination(ecr: Ecr) -> None:
    repo = ecr.new_repo("many")
    config = canonical({"architecture": "amd64", "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": []}})
    ecr.push_blob(repo, config)
    digests: set[str] = set()
    for i in range(250):
        manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": descriptor(OCI_CONFIG, config), "layers": [],
                              "annotations": {"n": str(i)}})
        resp = ecr.put_manifest(repo, f"t{i:03d}" if i % 5 else sha256(manifest), manifest)
        assert resp.status_code == 201, describe(resp)
        digests.add(sha256(manifest))

    sizes = []
    seen: list[str] = []
    for page in ecr.client.get_paginator("describe_images").paginate(
            repositoryName=repo, PaginationConfig={"PageSize": 100}):
        sizes.append(len(page["imageDetails"]))
        seen.extend(d["imageDigest"] for d in page["imageDetails"])
    assert sizes == [100, 100, 50]
    assert len(seen) == 250 and set(seen) == digests

    # by hand
    manual: list[str] = []
    token = None
    for _ in range(100):
        kwargs: dict[str, Any] = {"repositoryName": repo, "maxResults": 64}
        if token:
            kwargs["nextToken"] = token
        page = ecr.client.describe_images(**kwargs)
        assert len(page["imageDetails"]) <= 64
        manual.extend(d["imageDigest"] for d in page["imageDetails"])
        token = page.get("nextToken")
        if not token:
            break
    assert manual == seen
    # the default page is 100
    first = ecr.client.describe_images(repositoryName=repo)
    assert len(first["imageDetails"]) == 100 and first.get("nextToken")

    # ListImages: the paginator reaches every image once; UNTAGGED lists the 50 digests
    ids: list[dict[str, str]] = []
    for page in ecr.client.get_paginator("list_images").paginate(
            repositoryName=repo, PaginationConfig={"PageSize": 100}):
        assert len(page["imageIds"]) <= 100, "a ListImages page exceeds maxResults"
        ids.extend(page["imageIds"])
    assert {i["imageDigest"] for i in ids} == digests
    assert len(ids) == 250
    untagged = ecr.client.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"},
                                      maxResults=1000)["imageIds"]
    assert len(untagged) == 50 and all("imageTag" not in i for i in untagged)
    # a pagination token and an image list are exclusive; a forged token is refused
    raises("InvalidParameterException", ecr.client.describe_images, repositoryName=repo,
           imageIds=[{"imageTag": "t001"}], maxResults=5)
    raises("InvalidParameterException", ecr.client.describe_images, repositoryName=repo,
           nextToken="garbage!")


def test_list_images_one_entry_per_tag(ecr: Ecr) -> None:
    repo = ecr.new_repo("list")
    multi = ecr.push(repo, image(), "a", "b", "c")
    bare = ecr.push(repo, image())
    ids = ecr.client.list_images(repositoryName=repo)["imageIds"]
    assert names_of(ids) == sorted([(multi.digest, "a"), (multi.digest, "b"),
                                    (multi.digest, "c"), (bare.digest, None)])
    tagged = ecr.client.list_images(repositoryName=repo,
                                    filter={"tagStatus": "TAGGED"})["imageIds"]
    assert names_of(tagged) == sorted([(multi.digest, t) for t in "abc"])
    raises("RepositoryNotFoundException", ecr.client.list_images,
           repositoryName=unique("missing"))


def test_list_images_max_results_bounds_the_page(ecr: Ecr) -> None:
    """maxResults is "the maximum number of image results returned" — ListImages' results are
    imageIds (one per tag), so a page must never hold more than maxResults of them, and paging
    through must still return every (digest, tag) exactly once."""
    repo = ecr.new_repo("list-max")
    multi = ecr.push(repo, image(), "a", "b", "c")
    other = ecr.push(repo, image(), "d")
    page = ecr.client.list_images(repositoryName=repo, maxResults=1)
    assert len(page["imageIds"]) == 1, page["imageIds"]
    collected: list[dict[str, str]] = []
    for page in ecr.client.get_paginator("list_images").paginate(
            repositoryName=repo, PaginationConfig={"PageSize": 2}):
        assert len(page["imageIds"]) <= 2, page["imageIds"]
        collected.extend(page["imageIds"])
    assert names_of(collected) == sorted([(multi.digest, "a"), (multi.digest, "b"),
                                          (multi.digest, "c"), (other.digest, "d")])


def test_artifact_media_types(ecr: Ecr) -> None:
    repo = ecr.new_repo("artifacts")
    chart = ecr.push(repo, image(config_media_type=HELM_CONFIG), "chart")
    sbom_type = "application/vnd.example.sbom.v1+json"
    empty = b"{}"
    sbom = ecr.push(repo, image(config=empty, config_media_type=OCI_EMPTY,
                                artifact_type=sbom_type), "sbom")
    details = ecr.details(repo)
    assert details[chart.digest]["artifactMediaType"] == HELM_CONFIG
    assert details[sbom.digest]["artifactMediaType"] == sbom_type
    assert details[sbom.digest]["imageSizeInBytes"] == sbom.size
    charts = [d for d in details.values() if d.get("artifactMediaType") == HELM_CONFIG]
    assert [d["imageDigest"] for d in charts] == [chart.digest]


def test_docker_manifest_and_index_details(ecr: Ecr) -> None:
    repo = ecr.new_repo("docker")
    config = canonical({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex,
                        "rootfs": {"type": "layers", "diff_ids": []}})
    layer = os.urandom(1000)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
    }, indent=3).encode()
    docker = ecr.push(repo, Artifact(manifest, [config, layer], DOCKER_MANIFEST), "docker")
    amd, arm = ecr.push(repo, image()), ecr.push(repo, image(layer_size=5000))
    index = ecr.push(repo, index_of(amd, arm), "multi")
    details = ecr.details(repo)
    assert details[docker.digest]["imageManifestMediaType"] == DOCKER_MANIFEST
    assert details[docker.digest]["artifactMediaType"] == \
        "application/vnd.docker.container.image.v1+json"
    assert details[docker.digest]["imageSizeInBytes"] == docker.size
    assert details[index.digest]["imageManifestMediaType"] == OCI_INDEX
    assert details[index.digest]["imageTags"] == ["multi"]
    assert details[index.digest]["imageSizeInBytes"] > 0


def test_last_recorded_pull_time(ecr: Ecr) -> None:
    repo = ecr.new_repo("pulltime")
    pushed = ecr.push(repo, image(), "v1")
    assert "lastRecordedPullTime" not in ecr.details(repo)[pushed.digest]
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    resp = ecr.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, describe(resp)

    def recorded() -> dt.datetime | None:
        return ecr.details(repo)[pushed.digest].get("lastRecordedPullTime")

    when = poll(recorded, timeout=10.0)
    assert when is not None, "a /v2 manifest GET was not recorded as a pull within 10 s"
    assert before <= when <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


def test_batch_get_image_records_a_pull(ecr: Ecr) -> None:
    repo = ecr.new_repo("pulltime-ecr")
    pushed = ecr.push(repo, image(), "v1")
    ecr.client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    when = poll(lambda: ecr.details(repo)[pushed.digest].get("lastRecordedPullTime"))
    assert when is not None and near_now(when)


def test_subject_manifest_digest(ecr: Ecr) -> None:
    repo = ecr.new_repo("referrer")
    base = ecr.push(repo, image(), "base")
    referrer = ecr.push(repo, image(artifact_type="application/vnd.example.signature",
                                    subject=descriptor(OCI_MANIFEST, base.manifest)))
    details = ecr.details(repo)
    assert details[referrer.digest]["subjectManifestDigest"] == base.digest
    assert details[referrer.digest]["artifactMediaType"] == "application/vnd.example.signature"
    assert "subjectManifestDigest" not in details[base.digest]


# ============================================================================================
# BatchGetImage, BatchDeleteImage
# ============================================================================================

def test_batch_get_image(ecr: Ecr) -> None:
    repo = ecr.new_repo("batchget")
    pretty = image()
    pretty.manifest = json.dumps(json.loads(pretty.manifest), indent=4).encode()
    one = ecr.push(repo, pretty, "one")
    two = ecr.push(repo, image())
    answer = ecr.client.batch_get_image(repositoryName=repo, imageIds=[
        {"imageTag": "one"}, {"imageDigest": two.digest}])
    assert answer["failures"] == []
    got = {i["imageId"]["imageDigest"]: i for i in answer["images"]}
    assert got[one.digest]["imageManifest"].encode() == one.manifest
    assert got[one.digest]["imageId"] == {"imageDigest": one.digest, "imageTag": "one"}
    assert got[one.digest]["imageManifestMediaType"] == OCI_MANIFEST
    assert got[one.digest]["repositoryName"] == repo
    assert got[one.digest]["registryId"] == ecr.registry_id
    assert got[two.digest]["imageManifest"].encode() == two.manifest
    assert got[two.digest]["imageId"] == {"imageDigest": two.digest}

    accepted = ecr.client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "one"}],
                                          acceptedMediaTypes=[OCI_MANIFEST, OCI_INDEX])
    assert len(accepted["images"]) == 1 and accepted["failures"] == []
    refused = ecr.client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "one"}],
                                         acceptedMediaTypes=[DOCKER_MANIFEST])
    assert refused["images"] == []
    assert [f["imageId"] for f in refused["failures"]] == [{"imageTag": "one"}]
    raises("RepositoryNotFoundException", ecr.client.batch_get_image,
           repositoryName=unique("missing"), imageIds=[{"imageTag": "x"}])


def test_batch_get_image_failures(ecr: Ecr) -> None:
    repo = ecr.new_repo("failures")
    one = ecr.push(repo, image(), "one")
    two = ecr.push(repo, image(), "two")
    cases = [
        ({"imageTag": "missing"}, "ImageNotFound"),
        ({"imageDigest": sha256(b"missing")}, "ImageNotFound"),
        ({"imageDigest": "sha256:not-hex"}, "InvalidImageDigest"),
        ({"imageTag": "bad tag!"}, "InvalidImageTag"),
        ({}, "MissingDigestAndTag"),
        ({"imageTag": "one", "imageDigest": two.digest}, "ImageTagDoesNotMatchDigest"),
    ]
    answer = ecr.client.batch_get_image(repositoryName=repo,
                                        imageIds=[{"imageTag": "one"}, *(c for c, _ in cases)])
    assert [i["imageId"]["imageDigest"] for i in answer["images"]] == [one.digest]
    def key(case: tuple[dict[str, str], str]) -> str:
        return json.dumps(case, sort_keys=True)

    failures = [(f["imageId"], f["failureCode"]) for f in answer["failures"]]
    assert sorted(failures, key=key) == sorted(cases, key=key)
    assert all(f.get("failureReason") for f in answer["failures"])


def test_batch_delete_image_by_tag_then_last_tag(ecr: Ecr) -> None:
    repo = ecr.new_repo("delete-tag")
    pushed = ecr.push(repo, image(), "a", "b")
    answer = ecr.client.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert answer["imageIds"] == [{"imageDigest": pushed.digest, "imageTag": "a"}]
    assert answer["failures"] == []
    assert ecr.details(repo)[pushed.digest]["imageTags"] == ["b"]
    answer = ecr.client.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert answer["imageIds"] == [{"imageDigest": pushed.digest, "imageTag": "b"}]
    # the image went with its last tag
    assert ecr.details(repo) == {}
    raises("ImageNotFoundException", ecr.client.describe_images, repositoryName=repo,
           imageIds=[{"imageDigest": pushed.digest}])
    resp = ecr.request("GET", f"/v2/{repo}/manifests/{pushed.digest}",
                       headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 404, describe(resp)


def test_batch_delete_image_by_digest_and_failures(ecr: Ecr) -> None:
    repo = ecr.new_repo("delete-digest")
    tagged = ecr.push(repo, image(), "x", "y")
    bare = ecr.push(repo, image())
    keep = ecr.push(repo, image(), "keep")
    answer = ecr.client.batch_delete_image(repositoryName=repo, imageIds=[
        {"imageDigest": tagged.digest}, {"imageDigest": bare.digest},
        {"imageTag": "missing"}, {"imageDigest": "sha256:zz"}, {}])
    assert names_of(answer["imageIds"]) == sorted([(tagged.digest, "x"), (tagged.digest, "y"),
                                                   (bare.digest, None)])
    assert sorted(f["failureCode"] for f in answer["failures"]) == sorted(
        ["ImageNotFound", "InvalidImageDigest", "MissingDigestAndTag"])
    assert set(ecr.details(repo)) == {keep.digest}
    raises("RepositoryNotFoundException", ecr.client.batch_delete_image,
           repositoryName=unique("missing"), imageIds=[{"imageTag": "x"}])


def test_batch_delete_child_of_an_index(ecr: Ecr) -> None:
    repo = ecr.new_repo("delete-child")
    amd, arm = ecr.push(repo, image()), ecr.push(repo, image())
    index = ecr.push(repo, index_of(amd, arm), "multi")
    answer = ecr.client.batch_delete_image(repositoryName=repo,
                                           imageIds=[{"imageDigest": amd.digest}])
    assert answer["imageIds"] == []
    assert [(f["imageId"], f["failureCode"]) for f in answer["failures"]] == [
        ({"imageDigest": amd.digest}, "ImageReferencedByManifestList")]
    assert set(ecr.details(repo)) == {amd.digest, arm.digest, index.digest}
    # once the index is gone, the child can go
    ecr.client.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    answer = ecr.client.batch_delete_image(repositoryName=repo,
                                           imageIds=[{"imageDigest": amd.digest}])
    assert answer["imageIds"] == [{"imageDigest": amd.digest}], answer


# ============================================================================================
# PutImage
# ============================================================================================

def test_put_image_by_tag_and_by_digest(ecr: Ecr) -> None:
    repo = ecr.new_repo("putimage")
    art = image()
    art.manifest = json.dumps(json.loads(art.manifest), indent=2).encode() + b"\n"
    for blob in art.blobs:
        ecr.push_blob(repo, blob)
    answer = ecr.client.put_image(repositoryName=repo, imageManifest=art.manifest.decode(),
                                  imageManifestMediaType=OCI_MANIFEST, imageTag="v1")["image"]
    assert answer["imageId"] == {"imageDigest": art.digest, "imageTag": "v1"}
    assert answer["imageManifest"].encode() == art.manifest
    assert answer["imageManifestMediaType"] == OCI_MANIFEST
    assert answer["repositoryName"] == repo and answer["registryId"] == ecr.registry_id
    for ref in ("v1", art.digest):
        resp = ecr.request("GET", f"/v2/{repo}/manifests/{ref}",
                           headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 200, describe(resp)
        assert resp.content == art.manifest, "PutImage changed the manifest bytes"
        assert resp.headers["Docker-Content-Digest"] == art.digest
    # the same manifest under the same tag: ImageAlreadyExistsException
    raises("ImageAlreadyExistsException", ecr.client.put_image, repositoryName=repo,
           imageManifest=art.manifest.decode(), imageTag="v1")
    # another tag for it is fine
    ecr.client.put_image(repositoryName=repo, imageManifest=art.manifest.decode(),
                         imageTag="v2")
    assert sorted(ecr.details(repo)[art.digest]["imageTags"]) == ["v1", "v2"]

    # by digest only: stored untagged
    bare = image()
    for blob in bare.blobs:
        ecr.push_blob(repo, blob)
    answer = ecr.client.put_image(repositoryName=repo, imageManifest=bare.manifest.decode(),
                                  imageDigest=bare.digest)["image"]
    assert answer["imageId"] == {"imageDigest": bare.digest}
    assert "imageTags" not in ecr.details(repo)[bare.digest]
    # by digest and tag
    third = image()
    for blob in third.blobs:
        ecr.push_blob(repo, blob)
    answer = ecr.client.put_image(repositoryName=repo, imageManifest=third.manifest.decode(),
                                  imageDigest=third.digest, imageTag="third")["image"]
    assert answer["imageId"] == {"imageDigest": third.digest, "imageTag": "third"}
    resp = ecr.request("GET", f"/v2/{repo}/manifests/third", headers={"Accept": OCI_MANIFEST})
    assert resp.content == third.manifest


def test_put_image_refusals(ecr: Ecr) -> None:
    repo = ecr.new_repo("putimage-bad")
    missing = image()
    raises("LayersNotFoundException", ecr.client.put_image, repositoryName=repo,
           imageManifest=missing.manifest.decode(), imageTag="v1")
    child = image()
    raises("ReferencedImagesNotFoundException", ecr.client.put_image, repositoryName=repo,
           imageManifest=index_of(child).manifest.decode(), imageTag="idx")
    present = ecr.push(repo, image(), "present")
    raises("ImageDigestDoesNotMatchException", ecr.client.put_image, repositoryName=repo,
           imageManifest=present.manifest.decode(), imageDigest=sha256(b"other"))
    raises("InvalidParameterException", ecr.client.put_image, repositoryName=repo,
           imageManifest="{not json", imageTag="broken")
    raises("InvalidParameterException", ecr.client.put_image, repositoryName=repo,
           imageManifest=present.manifest.decode(), imageTag="bad tag!")
    raises("RepositoryNotFoundException", ecr.client.put_image,
           repositoryName=unique("missing"), imageManifest=present.manifest.decode(),
           imageTag="v1")
    assert set(ecr.details(repo)) == {present.digest}


# ============================================================================================
# Layers
# ============================================================================================

def _upload(ecr: Ecr, repo: str, data: bytes, part: int) -> str:
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)
    offset = 0
    for _ in range(len(data) // max(part, 1) + 2):
        if offset >= len(data):
            break
        chunk = data[offset:offset + part]
        answer = ecr.client.upload_layer_part(
            repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=offset,
            partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
        offset += len(chunk)
        assert answer["lastByteReceived"] == offset - 1
    return str(upload["uploadId"])


def test_multipart_layer_upload_is_a_v2_blob(ecr: Ecr) -> None:
    repo = ecr.new_repo("layers")
    data = os.urandom(5 * MiB) + os.urandom(5 * MiB) + os.urandom(12345)
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)
    assert UPLOAD_ID.match(upload["uploadId"]), upload
    assert upload["partSize"] >= 5 * MiB
    parts = [(0, 5 * MiB), (5 * MiB, 10 * MiB), (10 * MiB, len(data))]
    for first, end in parts:
        answer = ecr.client.upload_layer_part(
            repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=first,
            partLastByte=end - 1, layerPartBlob=data[first:end])
        assert answer["lastByteReceived"] == end - 1
        assert answer["uploadId"] == upload["uploadId"]
        assert answer["repositoryName"] == repo
    done = ecr.client.complete_layer_upload(repositoryName=repo, uploadId=upload["uploadId"],
                                            layerDigests=[sha256(data)])
    assert done["layerDigest"] == sha256(data)
    assert done["uploadId"] == upload["uploadId"] and done["repositoryName"] == repo

    resp = ecr.request("GET", f"/v2/{repo}/blobs/{sha256(data)}")
    assert resp.status_code == 200, describe(resp)
    assert resp.content == data
    check = ecr.client.batch_check_layer_availability(repositoryName=repo,
                                                      layerDigests=[sha256(data)])
    assert check["layers"] == [{"layerDigest": sha256(data), "layerAvailability": "AVAILABLE",
                                "layerSize": len(data)}]
    assert check["failures"] == []
    # and an image made of it through PutImage
    config = canonical({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex})
    config_upload = _upload(ecr, repo, config, 5 * MiB)
    ecr.client.complete_layer_upload(repositoryName=repo, uploadId=config_upload,
                                     layerDigests=[sha256(config)])
    manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor("application/octet-stream", data)]})
    ecr.client.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="big")
    detail = ecr.details(repo)[sha256(manifest)]
    assert detail["imageSizeInBytes"] == len(manifest) + len(config) + len(data)


def test_blob_pushed_over_v2_is_an_available_layer(ecr: Ecr) -> None:
    repo = ecr.new_repo("layers-v2")
    data = os.urandom(4096)
    digest = ecr.push_blob(repo, data)
    check = ecr.client.batch_check_layer_availability(
        repositoryName=repo, layerDigests=[digest, sha256(b"absent"), "not-a-digest"])
    assert check["layers"] == [{"layerDigest": digest, "layerAvailability": "AVAILABLE",
                                "layerSize": len(data)}]
    assert sorted((f["layerDigest"], f["failureCode"]) for f in check["failures"]) == sorted(
        [(sha256(b"absent"), "MissingLayerDigest"), ("not-a-digest", "InvalidLayerDigest")])
    raises("RepositoryNotFoundException", ecr.client.batch_check_layer_availability,
           repositoryName=unique("missing"), layerDigests=[digest])
    # LayerAlreadyExistsException: uploading it again through the ECR API
    upload = _upload(ecr, repo, data, 5 * MiB)
    raises("LayerAlreadyExistsException", ecr.client.complete_layer_upload,
           repositoryName=repo, uploadId=upload, layerDigests=[digest])


def test_layer_part_too_small(ecr: Ecr) -> None:
    """Parts other than the last must be at least 5 MiB (ECR refuses a small non-last part:
    the model lists LayerPartTooSmallException on CompleteLayerUpload)."""
    repo = ecr.new_repo("small-parts")
    small, more = os.urandom(1024), os.urandom(1024)
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.client.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0,
                                 partLastByte=len(small) - 1, layerPartBlob=small)
    with pytest.raises(ClientError) as info:
        ecr.client.upload_layer_part(repositoryName=repo, uploadId=upload,
                                     partFirstByte=len(small),
                                     partLastByte=len(small) + len(more) - 1,
                                     layerPartBlob=more)
        ecr.client.complete_layer_upload(repositoryName=repo, uploadId=upload,
                                         layerDigests=[sha256(small + more)])
    assert error_code(info.value) == "LayerPartTooSmallException", info.value.response
    check = ecr.client.batch_check_layer_availability(repositoryName=repo,
                                                      layerDigests=[sha256(small + more)])
    assert check["layers"] == []


def test_layer_first_part_must_start_at_zero(ecr: Ecr) -> None:
    """A part that does not start where the upload stands (byte 0 for the first) is an
    InvalidLayerPartException, whatever its size: it is not a "too small" part."""
    repo = ecr.new_repo("first-byte")
    data = os.urandom(2048)
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    raises("InvalidLayerPartException", ecr.client.upload_layer_part, repositoryName=repo,
           uploadId=upload, partFirstByte=10, partLastByte=10 + len(data) - 1,
           layerPartBlob=data)
    # nothing was stored: the upload still starts at 0
    answer = ecr.client.upload_layer_part(repositoryName=repo, uploadId=upload,
                                          partFirstByte=0, partLastByte=len(data) - 1,
                                          layerPartBlob=data)
    assert answer["lastByteReceived"] == len(data) - 1


def test_layer_upload_refusals(ecr: Ecr) -> None:
    repo = ecr.new_repo("upload-bad")
    data = os.urandom(5 * MiB)
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    # the byte range must match the part
    raises("InvalidLayerPartException", ecr.client.upload_layer_part, repositoryName=repo,
           uploadId=upload, partFirstByte=0, partLastByte=len(data) + 99, layerPartBlob=data)
    ecr.client.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0,
                                 partLastByte=len(data) - 1, layerPartBlob=data)
    # a part that does not continue where the last one ended
    raises("InvalidLayerPartException", ecr.client.upload_layer_part, repositoryName=repo,
           uploadId=upload, partFirstByte=len(data) + 5,
           partLastByte=len(data) + 5 + len(data) - 1, layerPartBlob=data)
    # the wrong digest
    raises("InvalidLayerException", ecr.client.complete_layer_upload, repositoryName=repo,
           uploadId=upload, layerDigests=[sha256(b"something else")])
    assert ecr.client.batch_check_layer_availability(
        repositoryName=repo, layerDigests=[sha256(data)])["layers"] == []

    nobody = str(uuid.uuid4())
    raises("UploadNotFoundException", ecr.client.upload_layer_part, repositoryName=repo,
           uploadId=nobody, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)
    raises("UploadNotFoundException", ecr.client.complete_layer_upload, repositoryName=repo,
           uploadId=nobody, layerDigests=[sha256(data)])

    empty = ecr.client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    raises("EmptyUploadException", ecr.client.complete_layer_upload, repositoryName=repo,
           uploadId=empty, layerDigests=[sha256(b"")])
    raises("RepositoryNotFoundException", ecr.client.initiate_layer_upload,
           repositoryName=unique("missing"))

    # an upload of another repository is not found here
    other = ecr.new_repo("upload-other")
    foreign = ecr.client.initiate_layer_upload(repositoryName=other)["uploadId"]
    raises("UploadNotFoundException", ecr.client.upload_layer_part, repositoryName=repo,
           uploadId=foreign, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)


# ============================================================================================
# GetDownloadUrlForLayer
# ============================================================================================

def test_get_download_url_for_layer(ecr: Ecr) -> None:
    repo = ecr.new_repo("download")
    data, other = os.urandom(3000), os.urandom(3000)
    digest, other_digest = ecr.push_blob(repo, data), ecr.push_blob(repo, other)
    answer = ecr.client.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert answer["layerDigest"] == digest
    url = answer["downloadUrl"]
    assert url.startswith(ecr.url + "/"), url
    resp = requests.get(url, timeout=TIMEOUT)  # no credentials at all
    assert resp.status_code == 200, describe(resp)
    assert resp.content == data

    # a tampered signature, and the signature of one blob used for another
    path, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    signature_key = next(k for k in params if "ignature" in k)
    sig = params[signature_key]
    params[signature_key] = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = path + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    resp = requests.get(tampered, timeout=TIMEOUT)
    assert resp.status_code == 401, describe(resp)
    resp = requests.get(url.replace(digest, other_digest), timeout=TIMEOUT)
    assert resp.status_code == 401, describe(resp)
    assert other not in resp.content
    # only GET/HEAD of that blob: not a manifest, not an upload
    manifest_url = url.replace(f"/blobs/{digest}", "/manifests/latest")
    assert requests.get(manifest_url, timeout=TIMEOUT).status_code == 401
    resp = requests.delete(url, timeout=TIMEOUT)
    assert resp.status_code in (401, 405), describe(resp)
    assert ecr.request("GET", f"/v2/{repo}/blobs/{digest}").status_code == 200

    # the expiry is signed, and short
    expires = int(params["X-Cargohold-Expires"])
    remaining = expires - dt.datetime.now(dt.UTC).timestamp()
    assert 0 < remaining <= 3600, remaining
    longer = url.replace(f"X-Cargohold-Expires={expires}", f"X-Cargohold-Expires={expires + 3600}")
    assert longer != url
    assert requests.get(longer, timeout=TIMEOUT).status_code == 401

    raises("LayersNotFoundException", ecr.client.get_download_url_for_layer,
           repositoryName=repo, layerDigest=sha256(b"absent"))
    raises("RepositoryNotFoundException", ecr.client.get_download_url_for_layer,
           repositoryName=unique("missing"), layerDigest=digest)


# ============================================================================================
# GetAuthorizationToken
# ============================================================================================

def test_get_authorization_token(ecr: Ecr) -> None:
    [data] = ecr.client.get_authorization_token()["authorizationData"]
    decoded = base64.b64decode(data["authorizationToken"], validate=True).decode()
    user, sep, password = decoded.partition(":")
    assert (user, sep) == ("AWS", ":")
    assert password and ":" not in password
    remaining = data["expiresAt"] - dt.datetime.now(dt.UTC)
    assert abs(remaining - dt.timedelta(hours=12)) < dt.timedelta(minutes=5), remaining
    assert data["proxyEndpoint"] == ecr.url
    # the password logs in to /v2 as user AWS
    assert basic_login(ecr.url, "AWS", password).status_code == 200
    assert basic_login(ecr.url, "AWS", password[:-2] + "xx").status_code == 401
    # and pulls with it
    repo = ecr.new_repo("login")
    pushed = ecr.push(repo, image(), "v1")
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/v1", auth=("AWS", password),
                        headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    assert resp.content == pushed.manifest
    # the registryIds parameter naming this registry is accepted
    ecr.client.get_authorization_token(registryIds=[ecr.registry_id])


# ============================================================================================
# Repository policies
# ============================================================================================

def test_repository_policy_set_get_delete(ecr: Ecr) -> None:
    repo = ecr.new_repo("policy")
    raises("RepositoryPolicyNotFoundException", ecr.client.get_repository_policy,
           repositoryName=repo)
    raises("RepositoryPolicyNotFoundException", ecr.client.delete_repository_policy,
           repositoryName=repo)
    text = policy({"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": "*"},
                   "Action": ["ecr:BatchGetImage"]})
    answer = ecr.client.set_repository_policy(repositoryName=repo, policyText=text)
    assert answer["policyText"] == text and answer["repositoryName"] == repo
    assert answer["registryId"] == ecr.registry_id
    got = ecr.client.get_repository_policy(repositoryName=repo)
    assert got["policyText"] == text
    deleted = ecr.client.delete_repository_policy(repositoryName=repo)
    assert deleted["policyText"] == text
    raises("RepositoryPolicyNotFoundException", ecr.client.get_repository_policy,
           repositoryName=repo)

    for bad in ("{not json", "[]", json.dumps({"Version": "2012-10-17"}),
                policy({"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"})):
        raises("InvalidParameterException", ecr.client.set_repository_policy,
               repositoryName=repo, policyText=bad)
    raises("RepositoryPolicyNotFoundException", ecr.client.get_repository_policy,
           repositoryName=repo)
    raises("RepositoryNotFoundException", ecr.client.set_repository_policy,
           repositoryName=unique("missing"), policyText=text)
    raises("RepositoryNotFoundException", ecr.client.get_repository_policy,
           repositoryName=unique("missing"))


def test_repository_policy_is_enforced(ecr: Ecr) -> None:
    repo = ecr.new_repo("enforced")
    pushed = ecr.push(repo, image(), "v1")
    name = f"limited{uuid.uuid4().hex[:8]}"
    key_id, secret = ecr.create_user(name, policy(allow("ecr:GetAuthorizationToken")))
    limited = ecr.client_for(key_id, secret)

    raises("AccessDeniedException", limited.batch_get_image, repositoryName=repo,
           imageIds=[{"imageTag": "v1"}])
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/v1", auth=(key_id, secret),
                        headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT)
    assert resp.status_code in (401, 403), describe(resp)

    text = policy({"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": ecr.user_arn(name)},
                   "Action": PULL})
    ecr.client.set_repository_policy(repositoryName=repo, policyText=text)
    images = limited.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert images["images"][0]["imageManifest"].encode() == pushed.manifest
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/v1", auth=(key_id, secret),
                        headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    # pull only: no push, no delete, no policy change
    raises("AccessDeniedException", limited.put_image, repositoryName=repo,
           imageManifest=pushed.manifest.decode(), imageTag="mine")
    raises("AccessDeniedException", limited.batch_delete_image, repositoryName=repo,
           imageIds=[{"imageTag": "v1"}])
    raises("AccessDeniedException", limited.delete_repository_policy, repositoryName=repo)
    # and the policy applies to that repository only
    other = ecr.new_repo("enforced-other")
    ecr.push(other, image(), "v1")
    raises("AccessDeniedException", limited.batch_get_image, repositoryName=other,
           imageIds=[{"imageTag": "v1"}])

    ecr.client.delete_repository_policy(repositoryName=repo)
    raises("AccessDeniedException", limited.batch_get_image, repositoryName=repo,
           imageIds=[{"imageTag": "v1"}])


def test_describe_repositories_shows_only_visible(ecr: Ecr) -> None:
    visible, hidden = ecr.new_repo("visible"), ecr.new_repo("hidden")
    name = f"viewer{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:ecr:{REGION}:{ecr.registry_id}:repository/{hidden}"
    key = ecr.create_user(name, policy(
        allow("ecr:DescribeRepositories"),
        {"Effect": "Deny", "Action": "ecr:DescribeRepositories", "Resource": arn}))
    viewer = ecr.client_for(*key)
    seen = [r["repositoryName"] for page in viewer.get_paginator(
        "describe_repositories").paginate() for r in page["repositories"]]
    assert visible in seen and hidden not in seen
    assert viewer.describe_repositories(repositoryNames=[visible])["repositories"]


def test_describe_repositories_by_name_honours_a_deny(ecr: Ecr) -> None:
    """An explicit Deny of ecr:DescribeRepositories on a repository's ARN must hold when the
    caller names that repository (the listing hides it; naming it must not reveal it)."""
    hidden = ecr.new_repo("denied")
    name = f"denied{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:ecr:{REGION}:{ecr.registry_id}:repository/{hidden}"
    key = ecr.create_user(name, policy(
        allow("ecr:DescribeRepositories"),
        {"Effect": "Deny", "Action": "ecr:DescribeRepositories", "Resource": arn}))
    viewer = ecr.client_for(*key)
    raises("AccessDeniedException", viewer.describe_repositories, repositoryNames=[hidden])


def test_describe_repositories_by_name_with_a_repository_scoped_allow(ecr: Ecr) -> None:
    """A policy allowing ecr:DescribeRepositories on one repository's ARN lets the caller
    describe that repository by name (IAM evaluates the named resource, not "*")."""
    repo = ecr.new_repo("scoped")
    name = f"scoped{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:ecr:{REGION}:{ecr.registry_id}:repository/{repo}"
    viewer = ecr.client_for(*ecr.create_user(name, policy(
        allow("ecr:DescribeRepositories", arn))))
    got = viewer.describe_repositories(repositoryNames=[repo])["repositories"]
    assert [r["repositoryName"] for r in got] == [repo]


# ============================================================================================
# Create on push
# ============================================================================================

def test_create_on_push_default(ecr: Ecr) -> None:
    name = unique("onpush")
    pushed = ecr.push(name, image(), "v1")
    [repo] = ecr.client.describe_repositories(repositoryNames=[name])["repositories"]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["repositoryUri"] == f"{ecr.host}/{name}"
    assert set(ecr.details(name)) == {pushed.digest}


def test_create_on_push_disabled(tmp_path: Path,
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    config = tmp_path / "cargohold.toml"
    config.write_text("create_on_push = false\n")
    with contextlib.contextmanager(start_ecr)(tmp_path_factory,
                                              ["--config", str(config)]) as env:
        name = unique("noauto")
        data = b"a blob for a repository that does not exist"
        resp = env.request("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}",
                           data=data, headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 404, describe(resp)
        assert resp.json()["errors"][0]["code"] == "NAME_UNKNOWN", describe(resp)
        art = image()
        resp = env.put_manifest(name, "v1", art.manifest)
        assert resp.status_code == 404, describe(resp)
        assert resp.json()["errors"][0]["code"] == "NAME_UNKNOWN", describe(resp)
        raises("RepositoryNotFoundException", env.client.describe_repositories,
               repositoryNames=[name])
        # once created through the API, the same push works
        env.client.create_repository(repositoryName=name)
        env.push(name, art, "v1")
        assert set(env.details(name)) == {art.digest}


def test_server_is_still_healthy(ecr: Ecr) -> None:
    """No request above crashed the server (a 500 would have failed its test; this checks
    the process too)."""
    assert ecr.server.proc is not None and ecr.server.proc.poll() is None
    assert "Traceback" not in ecr.server.log(), ecr.server.log()[-3000:]

