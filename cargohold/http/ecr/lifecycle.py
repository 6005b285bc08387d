"""ECR lifecycle-policy operations: Put/Get/Delete LifecyclePolicy and the policy preview."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, named_repository, repository_ids
from cargohold.http.keys import STORAGE_KEY
from cargohold.services.repositories import decode_token, encode_token
from cargohold.services.retention.lifecycle import LifecycleService
from cargohold.wire.ecr import invalid_parameter

PREVIEW_PAGE = 100


def _service(call: Call) -> LifecycleService:
    return LifecycleService(call.request.app[STORAGE_KEY], call.registry_id)


async def put_lifecycle_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name, text = params["repositoryName"], params["lifecyclePolicyText"]
    await _service(call).put_policy(name, text)
    return {**repository_ids(call, name), "lifecyclePolicyText": text}


def _stored_shape(call: Call, name: str, stored: Any) -> dict[str, Any]:
    result = {**repository_ids(call, name), "lifecyclePolicyText": stored.text}
    if stored.last_evaluated_at is not None:
        result["lastEvaluatedAt"] = stored.last_evaluated_at / 1e6
    return result


async def get_lifecycle_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    return _stored_shape(call, name, await _service(call).get_policy(name))


async def delete_lifecycle_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    return _stored_shape(call, name, await _service(call).delete_policy(name))


async def start_lifecycle_policy_preview(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    text, status = await _service(call).start_preview(name, params.get("lifecyclePolicyText"))
    return {**repository_ids(call, name), "lifecyclePolicyText": text, "status": status}


def _wanted(result: dict[str, Any], image_ids: list[dict[str, str]] | None,
            tag_status: str) -> bool:
    tags = result.get("imageTags", [])
    if tag_status == "TAGGED" and not tags:
        return False
    if tag_status == "UNTAGGED" and tags:
        return False
    if not image_ids:
        return True
    for image_id in image_ids:
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        if (digest is None or digest == result["imageDigest"]) and (tag is None or tag in tags):
            return True
    return False


async def get_lifecycle_policy_preview(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    image_ids = params.get("imageIds")
    if image_ids and ("nextToken" in params or "maxResults" in params):
        raise invalid_parameter("imageIds cannot be combined with nextToken or maxResults")
    if any(not (i.get("imageDigest") or i.get("imageTag")) for i in image_ids or []):
        raise invalid_parameter("each imageId needs an imageDigest or an imageTag")
    token = decode_token(params.get("nextToken"), int)
    offset = token[0] if token else 0
    limit = params.get("maxResults", PREVIEW_PAGE)
    preview = await _service(call).get_preview(name)
    tag_status = params.get("filter", {}).get("tagStatus", "ANY")
    matching = [r for r in preview.results if _wanted(r, image_ids, tag_status)]
    page = matching[offset:offset + limit]
    result: dict[str, Any] = {
        **repository_ids(call, name), "lifecyclePolicyText": preview.text, "status": preview.status,
        "previewResults": page,
        "summary": {"expiringImageTotalCount": len(preview.results)},
    }
    if offset + limit < len(matching):
        result["nextToken"] = encode_token([offset + limit])
    return result


LIFECYCLE_OPERATIONS: dict[str, OperationSpec] = {
    "PutLifecyclePolicy": OperationSpec(put_lifecycle_policy, named_repository),
    "GetLifecyclePolicy": OperationSpec(get_lifecycle_policy, named_repository),
    "DeleteLifecyclePolicy": OperationSpec(delete_lifecycle_policy, named_repository),
    "StartLifecyclePolicyPreview": OperationSpec(start_lifecycle_policy_preview, named_repository),
    "GetLifecyclePolicyPreview": OperationSpec(get_lifecycle_policy_preview, named_repository),
}
