"""ECR's replication backfill operations: copy what a rule's repositories held before the
rule to one destination, with progress (Start/Stop/DescribeResults/List)."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, registry_wide
from cargohold.http.v2.cache import REPLICATION_KEY
from cargohold.services.repositories import decode_token, encode_token
from cargohold.services.upstream.replication import ReplicationService, matches
from cargohold.storage.backfills import Backfill, BackfillInProgress, BackfillStore
from cargohold.wire.ecr import EcrError

DEFAULT_RESULTS = 100
DEFAULT_LIST = 50


def _service(call: Call) -> tuple[ReplicationService, BackfillStore]:
    service = call.request.app[REPLICATION_KEY]
    return service, BackfillStore(service.storage.database)


def _summary(call: Call, backfill: Backfill, *, progress: bool = True) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "replicationBackfillId": backfill.id, "registryId": call.registry_id,
        "destination": {"region": backfill.region, "registryId": backfill.registry_id},
        "status": backfill.status, "startedAt": backfill.started_at / 1e6}
    if progress:
        shape["progress"] = {"totalReplicationCount": backfill.total,
                             "completedReplicationCount": backfill.completed,
                             "failedReplicationCount": backfill.failed,
                             "failureCodes": backfill.failure_codes}
        if backfill.ended_at is not None:
            shape["endedAt"] = backfill.ended_at / 1e6
    return shape


async def _get(call: Call, backfill_id: str) -> Backfill:
    service, store = _service(call)
    backfill = await service.storage.db(store.get, backfill_id)
    if backfill is None:
        raise EcrError("ReplicationBackfillNotFoundException",
                       f"No replication backfill with id '{backfill_id}'")
    return backfill


async def start_backfill(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service, store = _service(call)
    await service.refresh(force=True)
    destination = params["destination"]
    registry_id, region = destination["registryId"], destination["region"]
    rules = [rule for rule in service.config.get("rules", []) if any(
        d["registryId"] == registry_id and d["region"] == region
        for d in rule["destinations"])]
    if not rules:
        raise EcrError("ValidationException",
                       f"No replication rule names the destination {registry_id} in {region}")
    try:
        backfill = await service.storage.db(
            store.start, registry_id, region,
            lambda name: any(matches(rule, name) for rule in rules))
    except BackfillInProgress as exc:
        raise EcrError("ReplicationBackfillInProgressException",
                       f"Replication backfill {exc} to {registry_id} is still in progress"
                       ) from None
    return _summary(call, backfill, progress=False)


async def stop_backfill(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service, store = _service(call)
    backfill = await _get(call, params["replicationBackfillId"])
    if backfill.status != "IN_PROGRESS":
        raise EcrError("ReplicationBackfillInvalidStatusException",
                       f"Replication backfill {backfill.id} is {backfill.status}, not "
                       "IN_PROGRESS")
    stopped = await service.storage.db(store.stop, backfill.id)
    return _summary(call, stopped, progress=False)


async def describe_results(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service, store = _service(call)
    backfill = await _get(call, params["replicationBackfillId"])
    token = decode_token(params.get("nextToken"), int)
    offset = token[0] if token else 0
    limit = params.get("maxResults", DEFAULT_RESULTS)
    rows = await service.storage.db(store.results, backfill.id,
                                    params.get("resultStatusFilter"), offset, limit + 1)
    results = []
    for row in rows[:limit]:
        image_id = {"imageDigest": row.digest, **({"imageTag": row.tag} if row.tag else {})}
        result: dict[str, Any] = {"repositoryName": row.repository, "imageId": image_id,
                                  "status": row.status}
        if row.status == "FAILED" and row.failure:
            result["failureCode"] = row.failure[:200]
        results.append(result)
    shape = {**_summary(call, backfill), "results": results}
    if len(rows) > limit:
        shape["nextToken"] = encode_token([offset + limit])
    return shape


async def list_backfills(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    service, store = _service(call)
    token = decode_token(params.get("nextToken"), int)
    offset = token[0] if token else 0
    limit = params.get("maxResults", DEFAULT_LIST)
    page = await service.storage.db(store.page, offset, limit + 1)
    shape: dict[str, Any] = {"registryId": call.registry_id,
                             "backfills": [_summary(call, b) for b in page[:limit]]}
    for entry in shape["backfills"]:
        entry.pop("registryId")
    if len(page) > limit:
        shape["nextToken"] = encode_token([offset + limit])
    return shape


BACKFILL_OPERATIONS: dict[str, OperationSpec] = {
    "StartReplicationBackfill": OperationSpec(start_backfill, registry_wide),
    "StopReplicationBackfill": OperationSpec(stop_backfill, registry_wide),
    "DescribeReplicationBackfillResults": OperationSpec(describe_results, registry_wide),
    "ListReplicationBackfills": OperationSpec(list_backfills, registry_wide),
}
