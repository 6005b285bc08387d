"""ECR account settings (PutAccountSetting / GetAccountSetting) that Cargohold honours.

BLOB_MOUNTING turns cross-repository blob mounting on or off for the whole registry. Cargohold
has always mounted, so it is ENABLED until someone disables it (Amazon ECR starts disabled).
REGISTRY_POLICY_SCOPE is V2: the registry policy covers every ECR action.
"""

from __future__ import annotations

from cargohold.services.storage import Storage
from cargohold.storage.ecr_settings import EcrSettingsStore
from cargohold.wire.ecr import EcrError, invalid_parameter

BLOB_MOUNTING = "BLOB_MOUNTING"
REGISTRY_POLICY_SCOPE = "REGISTRY_POLICY_SCOPE"

# name -> (allowed values, default)
SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    BLOB_MOUNTING: (("ENABLED", "DISABLED"), "ENABLED"),
    REGISTRY_POLICY_SCOPE: (("V2",), "V2"),
}


def _known(name: str) -> tuple[tuple[str, ...], str]:
    known = SETTINGS.get(name)
    if known is None:
        raise EcrError("ValidationException",
                       f"Invalid account setting name '{name}': this registry has "
                       f"{', '.join(sorted(SETTINGS))}")
    return known


class AccountSettings:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = EcrSettingsStore(storage.database)

    async def get(self, name: str) -> str:
        _, default = _known(name)
        value = await self.storage.read(self.store.account_setting, name)
        return value if value is not None else default

    async def put(self, name: str, value: str) -> str:
        allowed, _ = _known(name)
        if value not in allowed:
            raise invalid_parameter(f"Invalid value '{value}' for account setting {name}: "
                                    f"allowed are {', '.join(allowed)}")
        await self.storage.db(self.store.put_account_setting, name, value)
        return value

    async def blob_mounting(self) -> bool:
        return await self.get(BLOB_MOUNTING) == "ENABLED"
