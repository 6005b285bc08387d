"""The ECR operations Cargohold serves, each a translation between ECR shapes and services."""

from __future__ import annotations

import base64
from typing import Any

from cargohold.http.ecr.protocol import (
    Call,
    OperationSpec,
    named_repository,
    registry_wide,
    repository_ids,
)
from cargohold.http.ecr.shapes import (
    exclusion_filters,
    image_detail,
    repository_arn,
    repository_shape,
)
from cargohold.http.keys import (
    AUTHORIZER_KEY,
    IDENTITY_KEY,
    IMAGES_KEY,
    REPOSITORIES_KEY,
    STORAGE_KEY,
)
from cargohold.services.actions import DESCRIBE_REPOSITORIES
from cargohold.services.images import ImageService
from cargohold.services.repositories import RepositoryService
from cargohold.storage.repositories import RepositorySettings
from cargohold.wire.ecr import invalid_parameter
from cargohold.wire.names import MAX_NAME_LENGTH

DEFAULT_PAGE = 100


def _repositories(call: Call) -> RepositoryService:
    return call.request.app[REPOSITORIES_KEY]


def _images(call: Call) -> ImageService:
    return call.request.app[IMAGES_KEY]


def _repository(call: Call, record: Any) -> dict[str, Any]:
    return repository_shape(record, registry_id=call.registry_id, region=call.region,
                            host=call.host)


# -- repositories ------------------------------------------------------------------------------

async def create_repository(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    if len(params["repositoryName"]) > MAX_NAME_LENGTH:
        # ECR allows 256; the distribution spec keeps names under 256 for /v2 to serve them.
        raise invalid_parameter(f"repositoryName must be at most {MAX_NAME_LENGTH} characters")
    exclusions = [f["filter"] for f in params.get("imageTagMutabilityExclusionFilters", [])]
    mutability = params.get("imageTagMutability", "MUTABLE")
    if exclusions and not mutability.endswith("_WITH_EXCLUSION"):
        raise invalid_parameter("exclusion filters need a *_WITH_EXCLUSION tag mutability")
    encryption = params.get("encryptionConfiguration", {})
    settings = RepositorySettings(
        image_tag_mutability=mutability, exclusions=exclusions,
        scan_on_push=bool(params.get("imageScanningConfiguration", {}).get("scanOnPush")),
        encryption_type=encryption.get("encryptionType", "AES256"),
        kms_key=encryption.get("kmsKey"))
    if settings.kms_key and settings.encryption_type == "AES256":
        raise invalid_parameter("kmsKey needs encryptionType KMS or KMS_DSSE")
    tags = {tag["Key"]: tag["Value"] for tag in params.get("tags", [])}
    record = await _repositories(call).create(params["repositoryName"], settings, tags)
    return {"repository": _repository(call, record)}


async def describe_repositories(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service = _repositories(call)
    names = params.get("repositoryNames")
    if names:
        if "nextToken" in params or "maxResults" in params:
            raise invalid_parameter("repositoryNames cannot be combined with pagination")
        records = [await service.get(name) for name in names]
        return {"repositories": [_repository(call, r) for r in records]}
    limit = params.get("maxResults", DEFAULT_PAGE)
    records, token = await service.page(params.get("nextToken"), limit)
    storage = call.request.app[STORAGE_KEY]
    visible = set(await storage.db(call.request.app[AUTHORIZER_KEY].visible, call.principal,
                                   [r.name for r in records], (DESCRIBE_REPOSITORIES,)))
    result: dict[str, Any] = {"repositories": [_repository(call, r) for r in records
                                               if r.name in visible]}
    if token:
        result["nextToken"] = token
    return result


async def delete_repository(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    record = await _repositories(call).delete(params["repositoryName"],
                                              bool(params.get("force")))
    return {"repository": _repository(call, record)}


async def put_image_tag_mutability(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    exclusions = [f["filter"] for f in params.get("imageTagMutabilityExclusionFilters", [])]
    mutability = params["imageTagMutability"]
    if exclusions and not mutability.endswith("_WITH_EXCLUSION"):
        raise invalid_parameter("exclusion filters need a *_WITH_EXCLUSION tag mutability")
    record = await _repositories(call).update(params["repositoryName"],
                                              image_tag_mutability=mutability,
                                              exclusions=exclusions)
    result = {**repository_ids(call, record.name), "imageTagMutability": mutability}
    if exclusions:
        result["imageTagMutabilityExclusionFilters"] = exclusion_filters(exclusions)
    return result


async def put_image_scanning_configuration(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    scan = bool(params["imageScanningConfiguration"].get("scanOnPush"))
    record = await _repositories(call).update(params["repositoryName"], scan_on_push=scan)
    return {**repository_ids(call, record.name), "imageScanningConfiguration": {"scanOnPush": scan}}


async def describe_registry(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return {"registryId": call.registry_id, "replicationConfiguration": {"rules": []}}


def _repository_of_arn(call: Call | None, arn: str) -> str:
    prefix, _, name = arn.partition(":repository/")
    parts = prefix.split(":")
    if len(parts) != 5 or parts[:3] != ["arn", "aws", "ecr"] or not name:
        raise invalid_parameter(f"Invalid parameter at 'resourceArn': {arn!r} is not a "
                                "repository ARN")
    if call is not None and arn != repository_arn(call.region, call.registry_id, name):
        raise invalid_parameter(f"{arn!r} is not a repository of this registry")
    return name


async def tag_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = _repository_of_arn(call, params["resourceArn"])
    await _repositories(call).tag(name, {t["Key"]: t["Value"] for t in params["tags"]})
    return {}


async def untag_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = _repository_of_arn(call, params["resourceArn"])
    await _repositories(call).untag(name, list(params["tagKeys"]))
    return {}


async def list_tags_for_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = _repository_of_arn(call, params["resourceArn"])
    tags = await _repositories(call).resource_tags(name)
    return {"tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


async def set_repository_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _repositories(call).set_policy(name, params["policyText"])
    return {**repository_ids(call, name), "policyText": params["policyText"]}


async def get_repository_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    return {**repository_ids(call, name), "policyText": await _repositories(call).get_policy(name)}


async def delete_repository_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    policy = await _repositories(call).delete_policy(name)
    return {**repository_ids(call, name), "policyText": policy}


# -- images ------------------------------------------------------------------------------------

def _tag_status(params: dict[str, Any]) -> str:
    return params.get("filter", {}).get("tagStatus", "ANY")


async def describe_images(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    images = _images(call)
    if params.get("imageIds"):
        if "nextToken" in params or "maxResults" in params:
            raise invalid_parameter("imageIds cannot be combined with pagination")
        records = await images.describe(name, params["imageIds"])
        token = None
    else:
        records, token = await images.page(name, params.get("nextToken"),
                                           params.get("maxResults", DEFAULT_PAGE),
                                           _tag_status(params))
    result: dict[str, Any] = {"imageDetails": [
        image_detail(r, registry_id=call.registry_id, repository=name) for r in records]}
    if token:
        result["nextToken"] = token
    return result


async def list_images(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    ids, token = await _images(call).list_ids(name, params.get("nextToken"),
                                              params.get("maxResults", DEFAULT_PAGE),
                                              _tag_status(params))
    result: dict[str, Any] = {"imageIds": ids}
    if token:
        result["nextToken"] = token
    return result


async def batch_get_image(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _repositories(call).get(name)
    images, failures = await _images(call).batch_get(name, params["imageIds"],
                                                     params.get("acceptedMediaTypes"))
    return {"images": [{**repository_ids(call, name), **image} for image in images],
            "failures": [f.shape() for f in failures]}


async def batch_delete_image(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await _repositories(call).get(name)
    deleted, failures = await _images(call).batch_delete(name, params["imageIds"])
    return {"imageIds": deleted, "failures": [f.shape() for f in failures]}


async def put_image(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    image = await _images(call).put(name, params["imageManifest"],
                                    params.get("imageManifestMediaType"),
                                    params.get("imageTag"), params.get("imageDigest"))
    return {"image": {**repository_ids(call, name), **image}}


# -- authentication ----------------------------------------------------------------------------

async def get_authorization_token(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    identity = call.request.app[IDENTITY_KEY]
    storage = call.request.app[STORAGE_KEY]
    password, expires = await storage.db(identity.mint_temporary_password, call.access_key_id)
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    return {"authorizationData": [{"authorizationToken": token, "expiresAt": float(expires),
                                   "proxyEndpoint": call.base_url}]}


def _by_arn(params: dict[str, Any]) -> list[str] | None:
    return [_repository_of_arn(None, params["resourceArn"])]


def _listed(params: dict[str, Any]) -> list[str] | None:
    # Listing them all needs the action on every repository: the resource `repository/*`.
    return list(params.get("repositoryNames") or ["*"])


OPERATIONS: dict[str, OperationSpec] = {
    "CreateRepository": OperationSpec(create_repository, named_repository),
    "DescribeRepositories": OperationSpec(describe_repositories, _listed),
    "DeleteRepository": OperationSpec(delete_repository, named_repository),
    "PutImageTagMutability": OperationSpec(put_image_tag_mutability, named_repository),
    "PutImageScanningConfiguration": OperationSpec(put_image_scanning_configuration,
                                                   named_repository),
    "DescribeRegistry": OperationSpec(describe_registry, registry_wide),
    "TagResource": OperationSpec(tag_resource, _by_arn),
    "UntagResource": OperationSpec(untag_resource, _by_arn),
    "ListTagsForResource": OperationSpec(list_tags_for_resource, _by_arn),
    "SetRepositoryPolicy": OperationSpec(set_repository_policy, named_repository),
    "GetRepositoryPolicy": OperationSpec(get_repository_policy, named_repository),
    "DeleteRepositoryPolicy": OperationSpec(delete_repository_policy, named_repository),
    "DescribeImages": OperationSpec(describe_images, named_repository),
    "ListImages": OperationSpec(list_images, named_repository),
    "BatchGetImage": OperationSpec(batch_get_image, named_repository),
    "BatchDeleteImage": OperationSpec(batch_delete_image, named_repository),
    "PutImage": OperationSpec(put_image, named_repository),
    "GetAuthorizationToken": OperationSpec(get_authorization_token, registry_wide),
}

from cargohold.http.ecr.layers import LAYER_OPERATIONS  # noqa: E402
from cargohold.http.ecr.lifecycle import LIFECYCLE_OPERATIONS  # noqa: E402
from cargohold.http.ecr.referrers import REFERRERS_OPERATIONS  # noqa: E402
from cargohold.http.ecr.registry_settings import REGISTRY_SETTINGS_OPERATIONS  # noqa: E402
from cargohold.http.ecr.templates import TEMPLATE_OPERATIONS  # noqa: E402

OPERATIONS.update(LAYER_OPERATIONS)
OPERATIONS.update(REFERRERS_OPERATIONS)
OPERATIONS.update(REGISTRY_SETTINGS_OPERATIONS)
OPERATIONS.update(TEMPLATE_OPERATIONS)
OPERATIONS.update(LIFECYCLE_OPERATIONS)
from cargohold.http.ecr.pull_through import (  # noqa: E402
    PULL_THROUGH_OPERATIONS,
    guard_cache_pushes,
)
from cargohold.http.ecr.replication import REPLICATION_OPERATIONS  # noqa: E402

OPERATIONS.update(PULL_THROUGH_OPERATIONS)
OPERATIONS.update(guard_cache_pushes(OPERATIONS))
OPERATIONS.update(REPLICATION_OPERATIONS)
