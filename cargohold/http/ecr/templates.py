"""ECR repository creation templates: Create/Describe/Update/DeleteRepositoryCreationTemplate."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, registry_wide
from cargohold.http.ecr.shapes import exclusion_filters
from cargohold.http.keys import TEMPLATES_KEY
from cargohold.services.templates import TemplateService
from cargohold.storage.ecr_settings import TemplateRecord
from cargohold.wire.ecr import invalid_parameter

DEFAULT_PAGE = 100


def _service(call: Call) -> TemplateService:
    return call.request.app[TEMPLATES_KEY]


def _tags(raw: list[dict[str, str]]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in raw:
        if tag["Key"] in tags:
            raise invalid_parameter(f"resource tag key {tag['Key']!r} is given twice")
        tags[tag["Key"]] = tag["Value"]
    return tags


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    """The template fields a request sets (absent members: not set)."""
    fields: dict[str, Any] = {}
    if "description" in params:
        fields["description"] = params["description"]
    if "encryptionConfiguration" in params:
        encryption = params["encryptionConfiguration"]
        fields["encryption_type"] = encryption["encryptionType"]
        fields["kms_key"] = encryption.get("kmsKey") or None
    if "resourceTags" in params:
        fields["resource_tags"] = _tags(params["resourceTags"])
    if "imageTagMutability" in params:
        fields["image_tag_mutability"] = params["imageTagMutability"]
    if "imageTagMutabilityExclusionFilters" in params:
        fields["exclusions"] = [f["filter"] for f in params["imageTagMutabilityExclusionFilters"]]
    if "repositoryPolicy" in params:
        fields["repository_policy"] = params["repositoryPolicy"] or None
    if "lifecyclePolicy" in params:
        fields["lifecycle_policy"] = params["lifecyclePolicy"] or None
    if "appliedFor" in params:
        fields["applied_for"] = list(dict.fromkeys(params["appliedFor"]))
    if "customRoleArn" in params:
        fields["custom_role_arn"] = params["customRoleArn"] or None
    return fields


def template_shape(record: TemplateRecord) -> dict[str, Any]:
    encryption: dict[str, Any] = {"encryptionType": record.encryption_type}
    if record.kms_key:
        encryption["kmsKey"] = record.kms_key
    shape: dict[str, Any] = {
        "prefix": record.prefix,
        "encryptionConfiguration": encryption,
        "resourceTags": [{"Key": k, "Value": v} for k, v in record.resource_tags.items()],
        "imageTagMutability": record.image_tag_mutability,
        "appliedFor": list(record.applied_for),
        "createdAt": record.created_at / 1e6,
        "updatedAt": record.updated_at / 1e6,
    }
    if record.description is not None:
        shape["description"] = record.description
    if record.exclusions:
        shape["imageTagMutabilityExclusionFilters"] = exclusion_filters(record.exclusions)
    if record.repository_policy is not None:
        shape["repositoryPolicy"] = record.repository_policy
    if record.lifecycle_policy is not None:
        shape["lifecyclePolicy"] = record.lifecycle_policy
    if record.custom_role_arn is not None:
        shape["customRoleArn"] = record.custom_role_arn
    return shape


def _answer(call: Call, record: TemplateRecord) -> dict[str, Any]:
    return {"registryId": call.registry_id, "repositoryCreationTemplate": template_shape(record)}


async def create_template(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    record = TemplateRecord(prefix=params["prefix"], **{"applied_for": [], **_fields(params)})
    return _answer(call, await _service(call).create(record))


async def describe_templates(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    prefixes = params.get("prefixes")
    if prefixes and ("nextToken" in params or "maxResults" in params):
        raise invalid_parameter("prefixes cannot be combined with pagination")
    records, token = await _service(call).describe(
        prefixes or None, params.get("nextToken"), params.get("maxResults", DEFAULT_PAGE))
    result: dict[str, Any] = {"registryId": call.registry_id,
                              "repositoryCreationTemplates": [template_shape(r) for r in records]}
    if token:
        result["nextToken"] = token
    return result


async def update_template(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return _answer(call, await _service(call).update(params["prefix"], _fields(params)))


async def delete_template(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return _answer(call, await _service(call).delete(params["prefix"]))


TEMPLATE_OPERATIONS: dict[str, OperationSpec] = {
    "CreateRepositoryCreationTemplate": OperationSpec(create_template, registry_wide),
    "DescribeRepositoryCreationTemplates": OperationSpec(describe_templates, registry_wide),
    "UpdateRepositoryCreationTemplate": OperationSpec(update_template, registry_wide),
    "DeleteRepositoryCreationTemplate": OperationSpec(delete_template, registry_wide),
}
