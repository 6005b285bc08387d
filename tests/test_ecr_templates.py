"""Repository creation templates: Create/Describe/Update/DeleteRepositoryCreationTemplate with
boto3 and the aws CLI, prefix matching (longest prefix wins, then ROOT), and CREATE_ON_PUSH
templates configuring the repositories a push creates. Every error the model lists that bad
input can cause is checked, with the stored state unchanged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from ecrhelpers import (
    SKIP_EXTERNAL,
    Ecr,
    allow,
    describe,
    error_code,
    image,
    policy,
    start_ecr,
)

pytestmark = SKIP_EXTERNAL

PUBLIC_PULL = policy({"Sid": "pull", "Effect": "Allow", "Principal": "*",
                      "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]})
LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
    "action": {"type": "expire"}}]})


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def prefix() -> str:
    return f"tpl-{uuid.uuid4().hex[:10]}"


def templates(ecr: Ecr) -> list[dict[str, Any]]:
    found = []
    for page in ecr.client.get_paginator("describe_repository_creation_templates").paginate():
        found += page["repositoryCreationTemplates"]
    return found


def state(ecr: Ecr) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return templates(ecr), ecr.snapshot()


def repository(ecr: Ecr, name: str) -> dict[str, Any]:
    return ecr.client.describe_repositories(repositoryNames=[name])["repositories"][0]


def resource_tags(ecr: Ecr, name: str) -> dict[str, str]:
    arn = repository(ecr, name)["repositoryArn"]
    return {t["Key"]: t["Value"] for t in
            ecr.client.list_tags_for_resource(resourceArn=arn)["tags"]}


def repository_policy(ecr: Ecr, name: str) -> str | None:
    try:
        return str(ecr.client.get_repository_policy(repositoryName=name)["policyText"])
    except ClientError as exc:
        assert error_code(exc) == "RepositoryPolicyNotFoundException"
        return None


def test_create_describe_and_apply_on_push(ecr: Ecr) -> None:
    name = prefix()
    created = ecr.client.create_repository_creation_template(
        prefix=name, description="team repositories", appliedFor=["CREATE_ON_PUSH"],
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}],
        repositoryPolicy=PUBLIC_PULL, lifecyclePolicy=LIFECYCLE,
        resourceTags=[{"Key": "team", "Value": "blue"}, {"Key": "cost", "Value": "42"}])
    assert created["registryId"] == ecr.registry_id
    template = created["repositoryCreationTemplate"]
    assert template["prefix"] == name and template["description"] == "team repositories"
    assert template["appliedFor"] == ["CREATE_ON_PUSH"]
    assert template["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert template["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "latest*"}]
    assert template["repositoryPolicy"] == PUBLIC_PULL
    assert template["lifecyclePolicy"] == LIFECYCLE
    assert template["resourceTags"] == [{"Key": "team", "Value": "blue"},
                                        {"Key": "cost", "Value": "42"}]
    assert template["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert template["createdAt"] == template["updatedAt"]
    described = ecr.client.describe_repository_creation_templates(prefixes=[name])
    assert described["repositoryCreationTemplates"] == [template]

    # A push creates a repository under the prefix: it is configured by the template.
    repo = f"{name}/app"
    ecr.push(repo, image(), "v1")
    ecr.push(repo, image(), "latest")
    settings = repository(ecr, repo)
    assert settings["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert settings["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "latest*"}]
    assert resource_tags(ecr, repo) == {"team": "blue", "cost": "42"}
    assert json.loads(repository_policy(ecr, repo) or "null") == json.loads(PUBLIC_PULL)
    assert ecr.client.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == LIFECYCLE
    # ... and its tag mutability is enforced: v1 is immutable, latest is excluded.
    other = image()
    for blob in other.blobs:
        ecr.push_blob(repo, blob)
    resp = ecr.put_manifest(repo, "v1", other.manifest)
    assert resp.status_code == 400, describe(resp)
    resp = ecr.put_manifest(repo, "latest", other.manifest)
    assert resp.status_code == 201, describe(resp)
    # The repository policy works: anyone may pull.
    resp = requests.get(f"{ecr.url}/v2/{repo}/manifests/latest", timeout=30,
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 200, describe(resp)
    # The repository named like the prefix itself, and explicit CreateRepository, are not
    # covered (the prefix means "<prefix>/…"; templates are for repositories ECR creates).
    ecr.push(name, image(), "v1")
    assert repository(ecr, name)["imageTagMutability"] == "MUTABLE"
    explicit = f"{name}/explicit"
    ecr.client.create_repository(repositoryName=explicit)
    assert repository(ecr, explicit)["imageTagMutability"] == "MUTABLE"
    assert resource_tags(ecr, explicit) == {} and repository_policy(ecr, explicit) is None


def test_longest_prefix_wins_then_root(ecr: Ecr) -> None:
    top = prefix()
    ecr.client.create_repository_creation_template(
        prefix=top, appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "level", "Value": "top"}])
    ecr.client.create_repository_creation_template(
        prefix=f"{top}/team/", appliedFor=["CREATE_ON_PUSH", "REPLICATION"],
        imageTagMutability="MUTABLE", resourceTags=[{"Key": "level", "Value": "team"}])
    # Only for replication: it never applies to a push.
    ecr.client.create_repository_creation_template(
        prefix=f"{top}/team/replicated", appliedFor=["REPLICATION"],
        resourceTags=[{"Key": "level", "Value": "replicated"}])
    assert ecr.client.describe_repository_creation_templates(prefixes=[f"{top}/team"])[
        "repositoryCreationTemplates"][0]["prefix"] == f"{top}/team"  # trailing / dropped
    ecr.push(f"{top}/team/app", image(), "v1")
    ecr.push(f"{top}/other/app", image(), "v1")
    ecr.push(f"{top}/team/replicated/app", image(), "v1")
    assert resource_tags(ecr, f"{top}/team/app") == {"level": "team"}
    assert repository(ecr, f"{top}/team/app")["imageTagMutability"] == "MUTABLE"
    assert resource_tags(ecr, f"{top}/other/app") == {"level": "top"}
    assert repository(ecr, f"{top}/other/app")["imageTagMutability"] == "IMMUTABLE"
    assert resource_tags(ecr, f"{top}/team/replicated/app") == {"level": "team"}

    # ROOT covers what no other template covers.
    ecr.client.create_repository_creation_template(
        prefix="ROOT", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "level", "Value": "root"}])
    try:
        loose = f"loose-{uuid.uuid4().hex[:8]}/app"
        ecr.push(loose, image(), "v1")
        assert resource_tags(ecr, loose) == {"level": "root"}
        assert repository(ecr, loose)["imageTagMutability"] == "IMMUTABLE"
        ecr.push(f"{top}/more/app", image(), "v1")
        assert resource_tags(ecr, f"{top}/more/app") == {"level": "top"}
    finally:
        deleted = ecr.client.delete_repository_creation_template(prefix="ROOT")
        assert deleted["repositoryCreationTemplate"]["prefix"] == "ROOT"
    plain = f"loose-{uuid.uuid4().hex[:8]}/app"
    ecr.push(plain, image(), "v1")
    assert resource_tags(ecr, plain) == {}


def test_update_and_delete(ecr: Ecr) -> None:
    name = prefix()
    ecr.client.create_repository_creation_template(
        prefix=name, appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        repositoryPolicy=PUBLIC_PULL, description="before")
    ecr.push(f"{name}/first", image(), "v1")
    updated = ecr.client.update_repository_creation_template(
        prefix=name, imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
        repositoryPolicy="", resourceTags=[{"Key": "k", "Value": "v"}])
    template = updated["repositoryCreationTemplate"]
    assert template["description"] == "before"  # absent members keep their value
    assert template["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert "repositoryPolicy" not in template
    assert template["updatedAt"] >= template["createdAt"]
    ecr.push(f"{name}/second", image(), "v1")
    assert repository(ecr, f"{name}/second")["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert resource_tags(ecr, f"{name}/second") == {"k": "v"}
    assert repository_policy(ecr, f"{name}/second") is None
    # Repositories created before keep what they got.
    assert repository(ecr, f"{name}/first")["imageTagMutability"] == "IMMUTABLE"
    assert repository_policy(ecr, f"{name}/first") is not None

    deleted = ecr.client.delete_repository_creation_template(prefix=name)
    assert deleted["repositoryCreationTemplate"]["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert ecr.client.describe_repository_creation_templates(prefixes=[name])[
        "repositoryCreationTemplates"] == []
    ecr.push(f"{name}/third", image(), "v1")
    assert repository(ecr, f"{name}/third")["imageTagMutability"] == "MUTABLE"


def test_describe_pages(ecr: Ecr) -> None:
    base = prefix()
    for n in range(5):
        ecr.client.create_repository_creation_template(prefix=f"{base}/p{n}",
                                                       appliedFor=["CREATE_ON_PUSH"])
    pages = list(ecr.client.get_paginator("describe_repository_creation_templates").paginate(
        PaginationConfig={"PageSize": 2}))
    prefixes = [t["prefix"] for page in pages for t in page["repositoryCreationTemplates"]]
    assert len(prefixes) == len(set(prefixes)) and prefixes == sorted(prefixes)
    assert [f"{base}/p{n}" for n in range(5)] == [p for p in prefixes if p.startswith(base)]
    assert all(len(page["repositoryCreationTemplates"]) <= 2 for page in pages)


def bad(ecr: Ecr, operation: str, expected: str, **params: Any) -> None:
    before = state(ecr)
    with pytest.raises(ClientError) as caught:
        getattr(ecr.client, operation)(**params)
    assert error_code(caught.value) == expected, (operation, params, caught.value)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert state(ecr) == before, "a refused request changed the registry"


def test_every_listed_error_with_bad_input(ecr: Ecr) -> None:
    name = prefix()
    ecr.client.create_repository_creation_template(prefix=name, appliedFor=["CREATE_ON_PUSH"],
                                                   repositoryPolicy=PUBLIC_PULL)
    create = "create_repository_creation_template"
    update = "update_repository_creation_template"
    unknown = prefix()
    bad(ecr, update, "TemplateNotFoundException", prefix=unknown, description="x")
    bad(ecr, "delete_repository_creation_template", "TemplateNotFoundException", prefix=unknown)
    bad(ecr, create, "TemplateAlreadyExistsException", prefix=name,
        appliedFor=["CREATE_ON_PUSH"])
    bad(ecr, create, "TemplateAlreadyExistsException", prefix=name + "/",
        appliedFor=["CREATE_ON_PUSH"])
    bad(ecr, create, "InvalidParameterException", prefix="a" * 257,
        appliedFor=["CREATE_ON_PUSH"])
    bad(ecr, create, "InvalidParameterException", prefix="Upper/Case",
        appliedFor=["CREATE_ON_PUSH"])
    bad(ecr, create, "InvalidParameterException", prefix=prefix(),
        appliedFor=["CREATE_ON_PUSH"], repositoryPolicy='{"Statement": [')
    bad(ecr, create, "InvalidParameterException", prefix=prefix(),
        appliedFor=["CREATE_ON_PUSH"], lifecyclePolicy="{not json")
    bad(ecr, create, "InvalidParameterException", prefix=prefix(),
        appliedFor=["CREATE_ON_PUSH"], lifecyclePolicy=json.dumps({"rules": [{
            "rulePriority": 0, "selection": {"tagStatus": "any",
            "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}))
    bad(ecr, create, "InvalidParameterException", prefix=prefix(),
        appliedFor=["CREATE_ON_PUSH"], imageTagMutability="MUTABLE",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x*"}])
    bad(ecr, create, "InvalidParameterException", prefix=prefix(),
        appliedFor=["CREATE_ON_PUSH"], resourceTags=[{"Key": "k" * 129, "Value": "v"}])
    bad(ecr, create, "InvalidParameterException", prefix=prefix(), appliedFor=["SOMETIMES"])
    bad(ecr, create, "ValidationException", prefix=prefix(), appliedFor=[])
    bad(ecr, update, "InvalidParameterException", prefix=name, repositoryPolicy="[1, 2")
    bad(ecr, update, "InvalidParameterException", prefix=name,
        encryptionConfiguration={"encryptionType": "AES256",
                                 "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/abc"})
    bad(ecr, update, "ValidationException", prefix=name, appliedFor=[])
    bad(ecr, "describe_repository_creation_templates", "InvalidParameterException",
        nextToken="forged")
    bad(ecr, "describe_repository_creation_templates", "InvalidParameterException",
        prefixes=[name], maxResults=5)
    # The registry's limit on templates.
    existing = len(templates(ecr))
    extra = [f"{name}/n{n}" for n in range(100 - existing)]
    for item in extra:
        ecr.client.create_repository_creation_template(prefix=item,
                                                       appliedFor=["CREATE_ON_PUSH"])
    try:
        bad(ecr, create, "LimitExceededException", prefix=prefix(),
            appliedFor=["CREATE_ON_PUSH"])
    finally:
        for item in extra:
            ecr.client.delete_repository_creation_template(prefix=item)


def test_template_operations_need_their_actions(ecr: Ecr) -> None:
    reader = ecr.client_for(*ecr.create_user(
        f"tpl-{uuid.uuid4().hex[:8]}", policy(allow("ecr:DescribeRepositoryCreationTemplates"))))
    assert isinstance(reader.describe_repository_creation_templates()[
        "repositoryCreationTemplates"], list)
    before = templates(ecr)
    with pytest.raises(ClientError) as caught:
        reader.create_repository_creation_template(prefix=prefix(),
                                                   appliedFor=["CREATE_ON_PUSH"])
    assert error_code(caught.value) == "AccessDeniedException"
    assert templates(ecr) == before


def test_with_the_aws_cli(ecr: Ecr) -> None:
    name = prefix()
    out = ecr.aws("create-repository-creation-template", "--prefix", name,
                  "--applied-for", "CREATE_ON_PUSH", "--image-tag-mutability", "IMMUTABLE",
                  "--resource-tags", "Key=owner,Value=cli", "--output", "json")
    assert json.loads(out.stdout)["repositoryCreationTemplate"]["prefix"] == name
    out = ecr.aws("describe-repository-creation-templates", "--prefixes", name,
                  "--output", "json")
    [template] = json.loads(out.stdout)["repositoryCreationTemplates"]
    assert template["imageTagMutability"] == "IMMUTABLE"
    ecr.aws("update-repository-creation-template", "--prefix", name, "--description", "cli")
    ecr.push(f"{name}/app", image(), "v1")
    assert resource_tags(ecr, f"{name}/app") == {"owner": "cli"}
    ecr.aws("delete-repository-creation-template", "--prefix", name)
    result = ecr.aws("delete-repository-creation-template", "--prefix", name, check=False)
    assert result.returncode != 0 and "TemplateNotFoundException" in result.stderr
