"""The registry policy: Put/Get/DeleteRegistryPolicy with boto3 and the aws CLI, its errors with
unchanged state, and its effect in the one authorisation point against a secure server: an
Allow in it grants (over /v2 and the ECR API), a Deny in it overrides identity and repository
policies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from ecrhelpers import (
    OCI_MANIFEST,
    SKIP_EXTERNAL,
    TIMEOUT,
    Ecr,
    allow,
    describe,
    error_code,
    image,
    policy,
    start_ecr,
)

pytestmark = SKIP_EXTERNAL

PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


@pytest.fixture(autouse=True)
def no_registry_policy(ecr: Ecr) -> Iterator[None]:
    yield
    try:
        ecr.client.delete_registry_policy()
    except ClientError as exc:
        assert error_code(exc) == "RegistryPolicyNotFoundException"


def arn(ecr: Ecr, name: str) -> str:
    return f"arn:aws:ecr:us-east-1:{ecr.registry_id}:repository/{name}"


def statement(effect: str, principal: Any, action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource}


def current(ecr: Ecr) -> str | None:
    try:
        return str(ecr.client.get_registry_policy()["policyText"])
    except ClientError as exc:
        assert error_code(exc) == "RegistryPolicyNotFoundException"
        return None


def pull(ecr: Ecr, auth: tuple[str, str], repo: str) -> int:
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/v1", auth=auth, timeout=TIMEOUT,
                        headers={"Accept": OCI_MANIFEST})
    assert resp.status_code in (200, 401, 403), describe(resp)
    return resp.status_code


def test_put_get_delete(ecr: Ecr) -> None:
    with pytest.raises(ClientError) as caught:
        ecr.client.get_registry_policy()
    assert error_code(caught.value) == "RegistryPolicyNotFoundException"
    text = policy(statement("Allow", {"AWS": f"arn:aws:iam::{ecr.registry_id}:root"},
                            ["ecr:ReplicateImage", "ecr:CreateRepository"],
                            arn(ecr, "*")))
    answer = ecr.client.put_registry_policy(policyText=text)
    assert (answer["registryId"], answer["policyText"]) == (ecr.registry_id, text)
    got = ecr.client.get_registry_policy()
    assert (got["registryId"], got["policyText"]) == (ecr.registry_id, text)
    replacement = policy(statement("Allow", "*", "ecr:BatchGetImage", arn(ecr, "public/*")))
    ecr.client.put_registry_policy(policyText=replacement)
    assert current(ecr) == replacement
    deleted = ecr.client.delete_registry_policy()
    assert (deleted["registryId"], deleted["policyText"]) == (ecr.registry_id, replacement)
    assert current(ecr) is None
    with pytest.raises(ClientError) as caught:
        ecr.client.delete_registry_policy()
    assert error_code(caught.value) == "RegistryPolicyNotFoundException"


@pytest.mark.parametrize(("text", "expected"), [
    ('{"Version": "2012-10-17", "Statement": [', "InvalidParameterException"),
    ("not json at all", "InvalidParameterException"),
    ('{"Version": "2012-10-17", "Statement": []}', "InvalidParameterException"),
    (policy({"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}),
     "InvalidParameterException"),  # no Resource
    (policy({"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}),
     "InvalidParameterException"),  # no Principal
    (policy({"Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": "true"}}}),
     "InvalidParameterException"),
    ("x" * 10_241, "InvalidParameterException"),
    (policy(statement("Allow", "*", "s3:GetObject", "*")), "ValidationException"),
    (policy(statement("Allow", "*", "ecr:BatchGetImage",
                      "arn:aws:ecr:us-east-1:000000000000:repository/*")),
     "ValidationException"),
])
def test_bad_policies_are_refused_and_change_nothing(ecr: Ecr, text: str,
                                                     expected: str) -> None:
    for before in (None, policy(statement("Allow", "*", "ecr:BatchGetImage",
                                          arn(ecr, "kept/*")))):
        if before is not None:
            ecr.client.put_registry_policy(policyText=before)
        with pytest.raises(ClientError) as caught:
            ecr.client.put_registry_policy(policyText=text)
        assert error_code(caught.value) == expected
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert current(ecr) == before


def test_a_registry_allow_grants(ecr: Ecr) -> None:
    repo = ecr.new_repo("rp")
    ecr.push(repo, image(), "v1")
    name = f"rp-{uuid.uuid4().hex[:8]}"
    key = ecr.create_user(name)  # no identity policy at all
    client = ecr.client_for(*key)
    assert pull(ecr, key, repo) == 403
    with pytest.raises(ClientError) as caught:
        client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert error_code(caught.value) == "AccessDeniedException"
    ecr.client.put_registry_policy(policyText=policy(statement(
        "Allow", {"AWS": ecr.user_arn(name)}, [*PULL, "ecr:DescribeImages"], arn(ecr, repo)))
    )
    assert pull(ecr, key, repo) == 200
    assert client.batch_get_image(repositoryName=repo,
                                  imageIds=[{"imageTag": "v1"}])["images"]
    assert list(ecr.details(repo)) == [d["imageDigest"] for d in client.describe_images(
        repositoryName=repo)["imageDetails"]]
    # The Allow covers what it names, nothing else.
    with pytest.raises(ClientError) as caught:
        client.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert error_code(caught.value) == "AccessDeniedException"
    other = ecr.new_repo("rp")
    ecr.push(other, image(), "v1")
    assert pull(ecr, key, other) == 403
    ecr.client.delete_registry_policy()
    assert pull(ecr, key, repo) == 403


def test_a_registry_deny_overrides_identity_and_repository_policies(ecr: Ecr) -> None:
    repo = ecr.new_repo("rp")
    ecr.push(repo, image(), "v1")
    ecr.client.set_repository_policy(repositoryName=repo, policyText=policy(
        {"Effect": "Allow", "Principal": "*", "Action": PULL}))
    name = f"rp-{uuid.uuid4().hex[:8]}"
    key = ecr.create_user(name, policy(allow("ecr:*", arn(ecr, repo))))
    admin = ecr.server.admin_credentials
    assert pull(ecr, key, repo) == 200 and pull(ecr, admin, repo) == 200
    ecr.client.put_registry_policy(policyText=policy(
        statement("Deny", "*", "ecr:BatchGetImage", arn(ecr, repo)),
        statement("Deny", {"AWS": ecr.user_arn(name)}, "ecr:BatchDeleteImage", "*")))
    assert pull(ecr, key, repo) == 403
    assert pull(ecr, admin, repo) == 403  # the administrator's Allow * is overridden too
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/v1", timeout=TIMEOUT)
    assert resp.status_code == 401, describe(resp)  # the public repository policy, too
    with pytest.raises(ClientError) as caught:
        ecr.client_for(*key).batch_delete_image(repositoryName=repo,
                                                imageIds=[{"imageTag": "v1"}])
    assert error_code(caught.value) == "AccessDeniedException"
    assert ecr.details(repo), "the denied delete removed an image"
    # What the Deny does not name stays allowed.
    assert ecr.client_for(*key).describe_images(repositoryName=repo)["imageDetails"]


def test_registry_policy_operations_need_their_actions(ecr: Ecr) -> None:
    key = ecr.create_user(f"rp-{uuid.uuid4().hex[:8]}", policy(allow("ecr:GetRegistryPolicy")))
    client = ecr.client_for(*key)
    with pytest.raises(ClientError) as caught:
        client.get_registry_policy()
    assert error_code(caught.value) == "RegistryPolicyNotFoundException"
    for call, params in (("put_registry_policy", {"policyText": policy(statement(
            "Allow", "*", "ecr:*", "*"))}), ("delete_registry_policy", {})):
        with pytest.raises(ClientError) as caught:
            getattr(client, call)(**params)
        assert error_code(caught.value) == "AccessDeniedException", call
    assert current(ecr) is None


def test_with_the_aws_cli(ecr: Ecr) -> None:
    text = policy(statement("Allow", "*", "ecr:BatchGetImage", arn(ecr, "cli/*")))
    out = ecr.aws("put-registry-policy", "--policy-text", text, "--output", "json")
    assert json.loads(out.stdout)["policyText"] == text
    out = ecr.aws("get-registry-policy", "--output", "json")
    assert json.loads(out.stdout) == {"registryId": ecr.registry_id, "policyText": text}
    ecr.aws("delete-registry-policy")
    result = ecr.aws("get-registry-policy", check=False)
    assert result.returncode != 0 and "RegistryPolicyNotFoundException" in result.stderr


def test_a_lockout_is_undone_on_the_data_directory(ecr: Ecr) -> None:
    text = policy(statement("Deny", "*", "*", "*"))
    ecr.client.put_registry_policy(policyText=text)
    for call in (ecr.client.get_registry_policy, ecr.client.delete_registry_policy):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught.value) == "AccessDeniedException"
    assert ecr.cli("registry-policy", "show").stdout.strip() == text
    assert "removed" in ecr.cli("registry-policy", "delete").stdout
    assert current(ecr) is None
    result = ecr.cli("registry-policy", "delete", check=False)
    assert result.returncode != 0 and "no registry policy" in result.stderr
