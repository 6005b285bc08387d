"""ECR registry-wide settings: account settings (BLOB_MOUNTING, …) and the registry policy."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, registry_wide
from cargohold.http.keys import ACCOUNT_SETTINGS_KEY, REGISTRY_POLICY_KEY


async def put_account_setting(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    value = await call.request.app[ACCOUNT_SETTINGS_KEY].put(params["name"], params["value"])
    return {"name": params["name"], "value": value}


async def get_account_setting(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    value = await call.request.app[ACCOUNT_SETTINGS_KEY].get(params["name"])
    return {"name": params["name"], "value": value}


async def put_registry_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    text = await call.request.app[REGISTRY_POLICY_KEY].put(params["policyText"])
    return {"registryId": call.registry_id, "policyText": text}


async def get_registry_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    text = await call.request.app[REGISTRY_POLICY_KEY].get()
    return {"registryId": call.registry_id, "policyText": text}


async def delete_registry_policy(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    text = await call.request.app[REGISTRY_POLICY_KEY].delete()
    return {"registryId": call.registry_id, "policyText": text}


REGISTRY_SETTINGS_OPERATIONS: dict[str, OperationSpec] = {
    "PutAccountSetting": OperationSpec(put_account_setting, registry_wide),
    "GetAccountSetting": OperationSpec(get_account_setting, registry_wide),
    "PutRegistryPolicy": OperationSpec(put_registry_policy, registry_wide),
    "GetRegistryPolicy": OperationSpec(get_registry_policy, registry_wide),
    "DeleteRegistryPolicy": OperationSpec(delete_registry_policy, registry_wide),
}
