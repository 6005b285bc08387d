"""Bad input to the ECR API: unsigned, wrongly signed, stale or unknown-key requests, unknown
targets, malformed JSON, invalid names and ranges, oversized manifests, forged pagination tokens
and callers without permission. Each is refused with AWS's JSON error shape (`__type` +
`message`, a 4xx status) and changes nothing (the registry is described before and after).

Requests boto3 would refuse on the client side are built by hand: `requests` + botocore's
`SigV4Auth`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from ecrhelpers import (
    AMZ_JSON,
    OCI_CONFIG,
    OCI_MANIFEST,
    SKIP_EXTERNAL,
    TARGET_PREFIX,
    TIMEOUT,
    Ecr,
    allow,
    assert_aws_error,
    canonical,
    describe,
    descriptor,
    error_code,
    image,
    policy,
    sha256,
    start_ecr,
)

pytestmark = SKIP_EXTERNAL


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


@pytest.fixture(scope="module")
def repo(ecr: Ecr) -> str:
    """A repository with an image, resource tags and a policy: the state nothing may change."""
    name = ecr.new_repo("badinput", tags=[{"Key": "k", "Value": "v"}])
    ecr.push(name, image(), "v1")
    ecr.push(name, image())
    ecr.client.set_repository_policy(repositoryName=name, policyText=policy({
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "ecr:BatchGetImage"}))
    return name


@contextmanager
def unchanged(ecr: Ecr) -> Iterator[None]:
    before = ecr.snapshot()
    yield
    after = ecr.snapshot()
    assert after == before, "a refused request changed the registry"


def refused(resp: requests.Response, *names: str) -> dict[str, Any]:
    """An AWS JSON error whose `__type` is one of `names`."""
    body = assert_aws_error(resp, body_type(resp))
    assert body["__type"].split("#")[-1] in names, describe(resp)
    return body


def body_type(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("__type", "")).split("#")[-1]
    except ValueError:
        return ""


def create_body(name: str) -> dict[str, Any]:
    return {"repositoryName": name}


def token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


# ============================================================================================
# Authentication: SigV4
# ============================================================================================

def test_a_signed_request_works(ecr: Ecr, repo: str) -> None:
    """The raw-request helper itself: a correctly signed request succeeds."""
    resp = ecr.signed("DescribeRepositories", {"repositoryNames": [repo]})
    assert resp.status_code == 200, describe(resp)
    assert resp.headers["Content-Type"].split(";")[0] == AMZ_JSON
    assert resp.json()["repositories"][0]["repositoryName"] == repo


def test_unsigned_request(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed("CreateRepository", create_body(f"unsigned/{uuid.uuid4().hex}"),
                          sign=False)
        assert_aws_error(resp, "MissingAuthenticationTokenException")
        resp = ecr.signed("DeleteRepository", {"repositoryName": repo, "force": True},
                          sign=False)
        assert_aws_error(resp, "MissingAuthenticationTokenException")


def test_wrong_signature(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed("DeleteRepository", {"repositoryName": repo, "force": True},
                          secret=ecr.secret[:-1] + ("A" if ecr.secret[-1] != "A" else "B"))
        assert_aws_error(resp, "InvalidSignatureException")
        # a valid signature for one body, sent with another
        good = ecr.signed("DescribeRepositories", {"repositoryNames": [repo]})
        assert good.status_code == 200
        request = good.request
        assert request.body is not None
        swapped = json.dumps({"repositoryName": repo, "force": True}).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        headers["X-Amz-Target"] = f"{TARGET_PREFIX}.DeleteRepository"
        resp = requests.post(ecr.url + "/", data=swapped, headers=headers, timeout=TIMEOUT)
        assert_aws_error(resp, "InvalidSignatureException")


def test_signed_for_another_service(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed("DeleteRepository", {"repositoryName": repo, "force": True},
                          service="s3")
        assert_aws_error(resp, "InvalidSignatureException")


def test_any_region_is_accepted(ecr: Ecr, repo: str) -> None:
    resp = ecr.signed("DescribeRepositories", {"repositoryNames": [repo]},
                      region="eu-west-3")
    assert resp.status_code == 200, describe(resp)
    client = ecr.client_for(ecr.key_id, ecr.secret, region="ap-southeast-2")
    assert client.describe_repositories(repositoryNames=[repo])["repositories"]


def test_unknown_key(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed("DeleteRepository", {"repositoryName": repo, "force": True},
                          key_id="AKCHUNKNOWNKEY000000", secret="x" * 40)
        assert_aws_error(resp, "UnrecognizedClientException")
        client = ecr.client_for("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        with pytest.raises(ClientError) as info:
            client.describe_repositories()
        assert error_code(info.value) == "UnrecognizedClientException"


def test_deactivated_key(ecr: Ecr, repo: str) -> None:
    name = f"deactivated{uuid.uuid4().hex[:8]}"
    key_id, secret = ecr.create_user(name, policy(allow("ecr:*")))
    client = ecr.client_for(key_id, secret)
    assert client.describe_repositories(repositoryNames=[repo])["repositories"]
    ecr.cli("admin", "keys", "deactivate", key_id)
    with unchanged(ecr):
        with pytest.raises(ClientError) as info:
            client.delete_repository(repositoryName=repo, force=True)
        assert error_code(info.value) == "UnrecognizedClientException", info.value.response
        resp = ecr.signed("CreateRepository", create_body(f"deact/{uuid.uuid4().hex}"),
                          key_id=key_id, secret=secret)
        assert_aws_error(resp, "UnrecognizedClientException")
    ecr.cli("admin", "keys", "activate", key_id)
    assert client.describe_repositories(repositoryNames=[repo])["repositories"]


@pytest.mark.parametrize("minutes", [-16, 16, -60 * 24, 60 * 24 * 400])
def test_clock_skew_over_15_minutes(ecr: Ecr, repo: str, minutes: int) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    with unchanged(ecr):
        resp = ecr.signed("DeleteRepository", {"repositoryName": repo, "force": True},
                          when=when)
        body = assert_aws_error(resp, "InvalidSignatureException")
        assert "expired" in body["message"].lower() or "skew" in body["message"].lower(), body


@pytest.mark.parametrize("minutes", [-10, 10])
def test_clock_skew_under_15_minutes_is_fine(ecr: Ecr, repo: str, minutes: int) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    resp = ecr.signed("DescribeRepositories", {"repositoryNames": [repo]}, when=when)
    assert resp.status_code == 200, describe(resp)


@pytest.mark.parametrize("header", [
    "AWS4-HMAC-SHA256 nonsense",
    "AWS4-HMAC-SHA256 Credential=AKCH/20240101/us-east-1/ecr/aws4_request, "
    "SignedHeaders=host, Signature=zz",
    "Basic dXNlcjpwYXNz",
    "Bearer abc.def.ghi",
])
def test_malformed_authorization_header(ecr: Ecr, repo: str, header: str) -> None:
    with unchanged(ecr):
        resp = requests.post(ecr.url + "/", data=json.dumps({"repositoryName": repo,
                                                             "force": True}),
                             headers={"Content-Type": AMZ_JSON, "Authorization": header,
                                      "X-Amz-Target": f"{TARGET_PREFIX}.DeleteRepository",
                                      "X-Amz-Date": dt.datetime.now(dt.UTC).strftime(
                                          "%Y%m%dT%H%M%SZ")},
                             timeout=TIMEOUT)
        refused(resp, "IncompleteSignatureException", "InvalidSignatureException",
                "MissingAuthenticationTokenException", "UnrecognizedClientException")


def test_missing_amz_date(ecr: Ecr, repo: str) -> None:
    good = ecr.signed("DescribeRepositories", {"repositoryNames": [repo]})
    headers = {k: v for k, v in good.request.headers.items() if k.lower() != "x-amz-date"}
    with unchanged(ecr):
        resp = requests.post(ecr.url + "/", data=good.request.body, headers=headers,
                             timeout=TIMEOUT)
        refused(resp, "IncompleteSignatureException", "InvalidSignatureException",
                "MissingAuthenticationTokenException")


# ============================================================================================
# Protocol: target, JSON
# ============================================================================================

@pytest.mark.parametrize("target", [
    f"{TARGET_PREFIX}.NoSuchOperation",
    "AmazonEC2ContainerRegistry_V20990101.DescribeRepositories",
    "DescribeRepositories",
    f"{TARGET_PREFIX}.",
    f"{TARGET_PREFIX}.describeRepositories",
])
def test_unknown_target(ecr: Ecr, repo: str, target: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed(None, {}, target=target)
        assert_aws_error(resp, "UnknownOperationException")


def test_missing_target(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed(None, {"repositoryName": repo, "force": True})
        refused(resp, "UnknownOperationException", "MissingAction",
                "InvalidParameterException")


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"repositoryName": "x", ',
    b"[]",
    b'"a string"',
    b"null",
    b"\xff\xfe\x00garbage",
])
def test_malformed_json(ecr: Ecr, repo: str, body: bytes) -> None:
    with unchanged(ecr):
        resp = ecr.signed("CreateRepository", body)
        assert_aws_error(resp, "SerializationException")


@pytest.mark.parametrize("body", [
    {"repositoryName": 5},
    {"repositoryName": ["a", "b"]},
    {"repositoryName": "ok/name", "tags": {"Key": "k"}},
    {"repositoryName": "ok/name", "imageScanningConfiguration": {"scanOnPush": "yes"}},
])
def test_wrong_member_types(ecr: Ecr, repo: str, body: dict[str, Any]) -> None:
    with unchanged(ecr):
        resp = ecr.signed("CreateRepository", body)
        refused(resp, "SerializationException", "InvalidParameterException")


def test_missing_required_member(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = ecr.signed("CreateRepository", {})
        refused(resp, "InvalidParameterException", "ValidationException")
        resp = ecr.signed("PutImage", {"repositoryName": repo})
        refused(resp, "InvalidParameterException", "ValidationException")


def test_get_is_not_an_operation(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        resp = requests.get(ecr.url + "/", timeout=TIMEOUT, allow_redirects=False)
        # GET / is the web console's front door (issue 11), never an ECR operation.
        assert resp.status_code == 303 and resp.headers["Location"] == "/console/", \
            describe(resp)


def test_unsupported_model_operation(ecr: Ecr, repo: str) -> None:
    """An operation the model defines but Cargohold does not serve: a clean 4xx error."""
    with unchanged(ecr):
        resp = ecr.signed("PutLifecyclePolicy", {"repositoryName": repo,
                                                 "lifecyclePolicyText": "{}"})
        assert_aws_error(resp, body_type(resp))


# ============================================================================================
# Validation: names, ranges, sizes, tokens, registry ids
# ============================================================================================

@pytest.mark.parametrize("name", [
    "a",
    "UPPER/case",
    "-leading",
    "trailing-",
    "double//slash",
    "dots..twice",
    "with space",
    "a" * 257,
    "under_/score",
    "emoji-\u2603",
])
def test_invalid_repository_names(ecr: Ecr, repo: str, name: str) -> None:
    with unchanged(ecr):
        for operation, body in (("CreateRepository", {"repositoryName": name}),
                                ("DescribeImages", {"repositoryName": name}),
                                ("PutImageTagMutability", {"repositoryName": name,
                                                           "imageTagMutability": "IMMUTABLE"}),
                                ("DeleteRepository", {"repositoryName": name,
                                                      "force": True})):
            resp = ecr.signed(operation, body)
            assert_aws_error(resp, "InvalidParameterException")


@pytest.mark.parametrize("operation", ["DescribeImages", "ListImages", "DescribeRepositories"])
@pytest.mark.parametrize("value", [0, -1, 1001, 10**12])
def test_max_results_out_of_range(ecr: Ecr, repo: str, operation: str, value: int) -> None:
    body: dict[str, Any] = {"maxResults": value}
    if operation != "DescribeRepositories":
        body["repositoryName"] = repo
    resp = ecr.signed(operation, body)
    assert_aws_error(resp, "InvalidParameterException")


def test_lists_over_the_model_maximum(ecr: Ecr) -> None:
    """imageIds (BatchGetImage, BatchDeleteImage, DescribeImages) and layerDigests
    (BatchCheckLayerAvailability) hold at most 100 members in the model: a longer list is
    refused whole, before any of it is acted on."""
    name = ecr.new_repo("listmax")
    pushed = ecr.push(name, image(), "v1")
    ids = [{"imageTag": "v1"}] + [{"imageTag": f"t{i}"} for i in range(100)]
    with unchanged(ecr):
        for operation, body in (
            ("BatchDeleteImage", {"repositoryName": name, "imageIds": ids}),
            ("BatchGetImage", {"repositoryName": name, "imageIds": ids}),
            ("DescribeImages", {"repositoryName": name, "imageIds": ids[:1] * 101}),
            ("BatchCheckLayerAvailability", {"repositoryName": name,
                                             "layerDigests": [pushed.blobs and
                                                              sha256(pushed.blobs[0])] * 101}),
        ):
            resp = ecr.signed(operation, body)
            assert_aws_error(resp, "InvalidParameterException")


def test_repository_name_length_limit_is_consistent(ecr: Ecr) -> None:
    """The model allows repository names of up to 256 characters; a repository that
    CreateRepository accepts must be usable over /v2 (or CreateRepository must refuse it)."""
    for length in (255, 256):
        name = "n" * length
        resp = ecr.signed("CreateRepository", {"repositoryName": name})
        if resp.status_code != 200:
            assert_aws_error(resp, "InvalidParameterException")
            continue
        pushed = ecr.push(name, image(), "v1")
        assert set(ecr.details(name)) == {pushed.digest}, length


@pytest.mark.parametrize("operation", ["DescribeImages", "ListImages", "DescribeRepositories"])
@pytest.mark.parametrize("forged", [
    "!!!not base64!!!",
    token({"after": 1}),
    token([1, 2, 3]),
    token("a string"),
    token(10**30),
    token(-5),
    token(None),
    base64.urlsafe_b64encode(b"\x00\xff binary").decode(),
])
def test_forged_next_token(ecr: Ecr, repo: str, operation: str, forged: str) -> None:
    """A nextToken the server did not issue is refused with InvalidParameterException (never
    a 500), or, at worst, read as the start of the listing."""
    body: dict[str, Any] = {"nextToken": forged}
    if operation != "DescribeRepositories":
        body["repositoryName"] = repo
    resp = ecr.signed(operation, body)
    if resp.status_code == 200:
        return
    assert resp.status_code < 500, describe(resp)
    assert_aws_error(resp, "InvalidParameterException")


def test_enum_values(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        for operation, body in (
            ("PutImageTagMutability", {"repositoryName": repo, "imageTagMutability": "SOMETIMES"}),
            ("CreateRepository", {"repositoryName": f"enum/{uuid.uuid4().hex}",
                                  "encryptionConfiguration": {"encryptionType": "ROT13"}}),
            ("DescribeImages", {"repositoryName": repo, "filter": {"tagStatus": "MAYBE"}}),
            ("PutImageTagMutability", {
                "repositoryName": repo, "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                "imageTagMutabilityExclusionFilters": [{"filterType": "REGEX",
                                                        "filter": "v.*"}]}),
            ("PutImageTagMutability", {
                "repositoryName": repo, "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD",
                                                        "filter": "no spaces"}]}),
        ):
            resp = ecr.signed(operation, body)
            assert_aws_error(resp, "InvalidParameterException")


def test_oversized_manifest(ecr: Ecr, repo: str) -> None:
    config = canonical({"architecture": "amd64", "os": "linux"})
    ecr.push_blob(repo, config)
    padding = "x" * 4_194_400
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config), "layers": [],
                           "annotations": {"padding": padding}})
    assert len(manifest) > 4_194_304
    with unchanged(ecr):
        resp = ecr.signed("PutImage", {"repositoryName": repo, "imageManifest": manifest,
                                       "imageTag": "huge"})
        assert_aws_error(resp, "InvalidParameterException")
        resp = ecr.put_manifest(repo, "huge", manifest.encode())
        assert resp.status_code in (400, 413), describe(resp)


def test_invalid_put_image_inputs(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        for body in (
            {"repositoryName": repo, "imageManifest": "", "imageTag": "empty"},
            {"repositoryName": repo, "imageManifest": "{}", "imageTag": "x" * 301},
            {"repositoryName": repo, "imageManifest": "{\"schemaVersion\": 1}",
             "imageTag": "old"},
            {"repositoryName": repo, "imageManifest": "[1, 2]", "imageTag": "array"},
        ):
            resp = ecr.signed("PutImage", body)
            assert_aws_error(resp, "InvalidParameterException")


def test_invalid_layer_inputs(ecr: Ecr, repo: str) -> None:
    upload = ecr.client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with unchanged(ecr):
        resp = ecr.signed("UploadLayerPart", {
            "repositoryName": repo, "uploadId": upload, "partFirstByte": 0,
            "partLastByte": 3, "layerPartBlob": "!!not base64!!"})
        refused(resp, "InvalidParameterException", "SerializationException")
        resp = ecr.signed("UploadLayerPart", {
            "repositoryName": repo, "uploadId": "not-a-uuid", "partFirstByte": 0,
            "partLastByte": 3, "layerPartBlob": base64.b64encode(b"abcd").decode()})
        refused(resp, "InvalidParameterException", "UploadNotFoundException")
        resp = ecr.signed("CompleteLayerUpload", {
            "repositoryName": repo, "uploadId": upload, "layerDigests": ["md5:zz"]})
        refused(resp, "InvalidParameterException", "InvalidLayerException")
        resp = ecr.signed("GetDownloadUrlForLayer", {"repositoryName": repo,
                                                     "layerDigest": "nonsense"})
        assert_aws_error(resp, "InvalidParameterException")


def test_registry_id_of_another_registry(ecr: Ecr, repo: str) -> None:
    mine = ecr.registry_id
    other = "123456789012" if mine != "123456789012" else "210987654321"
    with unchanged(ecr):
        resp = ecr.signed("DeleteRepository", {"registryId": other, "repositoryName": repo,
                                               "force": True})
        refused(resp, "InvalidParameterException", "RepositoryNotFoundException",
                "AccessDeniedException")
        resp = ecr.signed("DescribeRepositories", {"registryId": "not-an-id"})
        assert_aws_error(resp, "InvalidParameterException")


def test_invalid_policy_text(ecr: Ecr, repo: str) -> None:
    with unchanged(ecr):
        for text in ("{", "null", json.dumps({"Statement": "nope"}), "x" * 10_241,
                     policy({"Effect": "Allow", "Principal": "*", "Action": "ecr:*",
                             "Condition": {"Bool": {"aws:SecureTransport": "true"}}})):
            resp = ecr.signed("SetRepositoryPolicy", {"repositoryName": repo,
                                                      "policyText": text})
            assert_aws_error(resp, "InvalidParameterException")


# ============================================================================================
# Authorisation
# ============================================================================================

def test_user_without_permission(ecr: Ecr, repo: str) -> None:
    name = f"nobody{uuid.uuid4().hex[:8]}"
    key_id, secret = ecr.create_user(name)
    client = ecr.client_for(key_id, secret)
    arn = ecr.client.describe_repositories(repositoryNames=[repo])["repositories"][0][
        "repositoryArn"]
    tagged = ecr.client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    manifest = tagged["images"][0]["imageManifest"]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_repository", {"repositoryName": f"denied/{uuid.uuid4().hex}"}),
        ("delete_repository", {"repositoryName": repo, "force": True}),
        ("put_image_tag_mutability", {"repositoryName": repo,
                                      "imageTagMutability": "IMMUTABLE"}),
        ("put_image", {"repositoryName": repo, "imageManifest": manifest, "imageTag": "x"}),
        ("batch_delete_image", {"repositoryName": repo, "imageIds": [{"imageTag": "v1"}]}),
        ("set_repository_policy", {"repositoryName": repo, "policyText": policy(
            {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"})}),
        ("delete_repository_policy", {"repositoryName": repo}),
        ("tag_resource", {"resourceArn": arn, "tags": [{"Key": "k", "Value": "stolen"}]}),
        ("untag_resource", {"resourceArn": arn, "tagKeys": ["k"]}),
        ("initiate_layer_upload", {"repositoryName": repo}),
        ("describe_images", {"repositoryName": repo}),
        ("list_images", {"repositoryName": repo}),
        ("describe_repositories", {}),
        ("get_repository_policy", {"repositoryName": repo}),
        ("get_authorization_token", {}),
    ]
    with unchanged(ecr):
        for method, kwargs in calls:
            with pytest.raises(ClientError) as info:
                getattr(client, method)(**kwargs)
            assert error_code(info.value) == "AccessDeniedException", (method,
                                                                       info.value.response)
            status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
            assert 400 <= status < 500
    # the repository policy grants everyone BatchGetImage, and nothing else
    got = client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == manifest


def test_server_is_still_healthy(ecr: Ecr) -> None:
    assert ecr.server.proc is not None and ecr.server.proc.poll() is None
    assert "Traceback" not in ecr.server.log(), ecr.server.log()[-3000:]
