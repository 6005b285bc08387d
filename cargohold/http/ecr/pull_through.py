"""ECR's pull-through cache rule operations, on the botocore model. Unlike ECR, any OCI
registry URL may be an upstream (`upstreamRegistryUrl`, with `upstreamRegistry` optional)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cargohold.http.ecr.protocol import Call, Operation, OperationSpec, registry_wide
from cargohold.http.v2.cache import CACHE_KEY, RULES_KEY
from cargohold.services.repositories import decode_token, encode_token
from cargohold.services.upstream.client import UpstreamError
from cargohold.services.upstream.rules import RuleService
from cargohold.storage.upstreams import PullThroughRule
from cargohold.wire.ecr import EcrError

DEFAULT_PAGE = 100


def _rules(call: Call) -> RuleService:
    return call.request.app[RULES_KEY]


def _shape(call: Call, rule: PullThroughRule, *fields: str) -> dict[str, Any]:
    """A rule as ECR describes it, limited to `fields` when given."""
    shape: dict[str, Any] = {
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": rule.upstream_url,
        "createdAt": rule.created_at / 1e6,
        "registryId": call.registry_id,
        "upstreamRepositoryPrefix": rule.upstream_prefix or "ROOT",
    }
    if rule.upstream_registry:
        shape["upstreamRegistry"] = rule.upstream_registry
    if rule.credential_arn:
        shape["credentialArn"] = rule.credential_arn
    if rule.updated_at is not None:
        shape["updatedAt"] = rule.updated_at / 1e6
    return {k: v for k, v in shape.items() if k in fields} if fields else shape


def _no_role(params: dict[str, Any]) -> None:
    if "customRoleArn" in params:
        raise EcrError("ValidationException",
                       "customRoleArn is not supported: Cargohold assumes no IAM roles; name "
                       "an upstream credential with credentialArn")


async def create_rule(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    _no_role(params)
    rule = await _rules(call).create(
        params["ecrRepositoryPrefix"], params["upstreamRegistryUrl"],
        params.get("upstreamRepositoryPrefix"), params.get("upstreamRegistry"),
        params.get("credentialArn"))
    return _shape(call, rule, "ecrRepositoryPrefix", "upstreamRegistryUrl", "createdAt",
                  "registryId", "upstreamRegistry", "credentialArn",
                  "upstreamRepositoryPrefix")


async def describe_rules(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    rules = _rules(call)
    prefixes = params.get("ecrRepositoryPrefixes")
    if prefixes:
        if "nextToken" in params or "maxResults" in params:
            raise EcrError("ValidationException",
                           "ecrRepositoryPrefixes cannot be combined with pagination")
        found = [await rules.get(prefix) for prefix in dict.fromkeys(prefixes)]
        return {"pullThroughCacheRules": [_shape(call, rule) for rule in found]}
    token = decode_token(params.get("nextToken"), str)
    limit = params.get("maxResults", DEFAULT_PAGE)
    page = await rules.page(token[0] if token else None, limit + 1)
    result: dict[str, Any] = {"pullThroughCacheRules": [_shape(call, r) for r in page[:limit]]}
    if len(page) > limit:
        result["nextToken"] = encode_token([page[limit - 1].prefix])
    return result


async def update_rule(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    _no_role(params)
    rule = await _rules(call).update(params["ecrRepositoryPrefix"], params.get("credentialArn"))
    return _shape(call, rule, "ecrRepositoryPrefix", "registryId", "updatedAt",
                  "credentialArn", "upstreamRepositoryPrefix")


async def delete_rule(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    rule = await _rules(call).delete(params["ecrRepositoryPrefix"])
    return _shape(call, rule, "ecrRepositoryPrefix", "upstreamRegistryUrl", "createdAt",
                  "registryId", "credentialArn", "upstreamRepositoryPrefix")


async def validate_rule(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Can the upstream be reached, with the rule's credential? (ECR's question too.)"""
    rule = await _rules(call).get(params["ecrRepositoryPrefix"])
    result = _shape(call, rule, "ecrRepositoryPrefix", "registryId", "upstreamRegistryUrl",
                    "credentialArn", "upstreamRepositoryPrefix")
    cache = call.request.app[CACHE_KEY]
    try:
        client = await cache.client_for(_rules(call).target_of(rule, ""))
        await client.ping()
    except UpstreamError as exc:
        return {**result, "isValid": False, "failure": f"upstream {exc.upstream}: {exc.message}"}
    except EcrError as exc:
        return {**result, "isValid": False, "failure": exc.message}
    return {**result, "isValid": True}


PULL_THROUGH_OPERATIONS: dict[str, OperationSpec] = {
    "CreatePullThroughCacheRule": OperationSpec(create_rule, registry_wide),
    "DescribePullThroughCacheRules": OperationSpec(describe_rules, registry_wide),
    "UpdatePullThroughCacheRule": OperationSpec(update_rule, registry_wide),
    "DeletePullThroughCacheRule": OperationSpec(delete_rule, registry_wide),
    "ValidatePullThroughCacheRule": OperationSpec(validate_rule, registry_wide),
}

PUSH_OPERATIONS = ("PutImage", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload")


def _refusing_cache_pushes(handler: Operation) -> Operation:
    async def guarded(call: Call, params: dict[str, Any]) -> dict[str, Any]:
        refusal = await call.request.app[CACHE_KEY].push_refusal(params["repositoryName"])
        if refusal is not None:
            # ECR's own answer to a push into a pull-through cache repository.
            raise EcrError("InvalidParameterException", refusal)
        return await handler(call, params)

    return guarded


def guard_cache_pushes(operations: dict[str, OperationSpec]) -> dict[str, OperationSpec]:
    """The ECR push operations, refusing cache repositories whose rule forbids pushes."""
    return {name: replace(operations[name], handler=_refusing_cache_pushes(
        operations[name].handler)) for name in PUSH_OPERATIONS if name in operations}
