"""ECR's replication operations: PutReplicationConfiguration, DescribeRegistry (with the
configuration) and DescribeImageReplicationStatus. A destination's `registryId` names a
remote registry configured with `cargohold admin replication-destinations put`."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.backfill import BACKFILL_OPERATIONS
from cargohold.http.ecr.protocol import Call, OperationSpec, named_repository, registry_wide
from cargohold.http.keys import MANIFESTS_KEY, REPOSITORIES_KEY
from cargohold.http.v2.cache import REPLICATION_KEY
from cargohold.services.upstream.replication import abandoned_reason, matches
from cargohold.wire.ecr import EcrError, invalid_parameter
from cargohold.wire.errors import RegistryError


async def put_replication_configuration(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service = call.request.app[REPLICATION_KEY]
    await service.refresh(force=True)
    config = params["replicationConfiguration"]
    for rule in config["rules"]:
        for destination in rule["destinations"]:
            registry_id = destination["registryId"]
            if registry_id == call.registry_id:
                raise invalid_parameter("a registry cannot replicate to itself")
            if registry_id not in service.destinations:
                raise EcrError("ValidationException",
                               f"registry {registry_id} is no replication destination: "
                               f"configure it with `cargohold admin replication-destinations "
                               f"put {registry_id} --url URL`")
    await service.put_configuration(config)
    return {"replicationConfiguration": config}


async def describe_registry(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service = call.request.app[REPLICATION_KEY]
    await service.refresh(force=True)
    return {"registryId": call.registry_id, "replicationConfiguration": service.config}


async def describe_image_replication_status(call: Call,
                                            params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    await call.request.app[REPOSITORIES_KEY].get(name)
    image_id = params["imageId"]
    reference = image_id.get("imageDigest") or image_id.get("imageTag")
    if not reference:
        raise invalid_parameter("imageId needs an imageDigest or an imageTag")
    try:
        record = await call.request.app[MANIFESTS_KEY].get(name, reference)
    except RegistryError:
        raise EcrError("ImageNotFoundException",
                       f"The image with imageId {image_id} does not exist within the "
                       f"repository with name '{name}'") from None
    service = call.request.app[REPLICATION_KEY]
    await service.refresh()
    states = {s.registry_id: s for s in await service.storage.db(
        service.store.image_states, name, record.digest)}
    statuses = []
    for rule in service.config.get("rules", []):
        if not matches(rule, name):
            continue
        for destination in rule["destinations"]:
            state = states.get(destination["registryId"])
            status: dict[str, Any] = {"region": destination["region"],
                                      "registryId": destination["registryId"]}
            if state is None or (state.status == "pending" and not state.last_error):
                status["status"] = "IN_PROGRESS"
            elif state.status == "delivered":
                status["status"] = "COMPLETE"
            elif state.status == "pending":  # retrying after a failure: the last reason
                status["status"] = "FAILED"
                status["failureCode"] = (state.last_error or state.status)[:200]
            else:  # given up: over the age or backlog bound
                status["status"] = "FAILED"
                status["failureCode"] = abandoned_reason(
                    state.status, state.last_error, service.storage.settings.upstreams)[:200]
            statuses.append(status)
    return {"repositoryName": name, "imageId": {**image_id, "imageDigest": record.digest},
            "replicationStatuses": statuses}


REPLICATION_OPERATIONS: dict[str, OperationSpec] = {
    "PutReplicationConfiguration": OperationSpec(put_replication_configuration, registry_wide),
    "DescribeRegistry": OperationSpec(describe_registry, registry_wide),
    "DescribeImageReplicationStatus": OperationSpec(describe_image_replication_status,
                                                    named_repository),
    **BACKFILL_OPERATIONS,
}
