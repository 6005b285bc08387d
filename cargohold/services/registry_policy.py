"""The registry policy (PutRegistryPolicy / GetRegistryPolicy / DeleteRegistryPolicy).

A resource policy for the whole registry: it names principals and repository ARNs, and the one
`Authorizer` evaluates it together with identity and repository policies (explicit Deny wins,
then any Allow). Cargohold evaluates it for every ECR action (REGISTRY_POLICY_SCOPE V2).
"""

from __future__ import annotations

from cargohold.services.authz import Authorizer
from cargohold.services.policy import PolicyError, PolicyKind, parse_policy
from cargohold.services.storage import Storage
from cargohold.storage.ecr_settings import EcrSettingsStore
from cargohold.wire.ecr import EcrError, invalid_parameter


def not_found() -> EcrError:
    return EcrError("RegistryPolicyNotFoundException",
                    "Registry policy does not exist in this registry")


class RegistryPolicyService:
    def __init__(self, storage: Storage, authorizer: Authorizer) -> None:
        self.storage = storage
        self.store = EcrSettingsStore(storage.database)
        self.registry_id = authorizer.registry_id

    def validate(self, text: str) -> None:
        """Malformed documents are InvalidParameterException; well-formed ones that cannot
        apply to this registry (another account, a non-ECR action) are ValidationException."""
        try:
            policy = parse_policy(text, PolicyKind.REGISTRY)
        except PolicyError as exc:
            raise invalid_parameter(f"Invalid registry policy provided: {exc}") from None
        for index, statement in enumerate(policy.statements):
            for action in statement.actions:
                if action != "*" and not action.lower().startswith("ecr:"):
                    raise EcrError("ValidationException",
                                   f"Statement[{index}]: {action!r} is not an ECR action")
            for resource in statement.resources or ():
                parts = resource.split(":", 5)
                if resource != "*" and (len(parts) != 6 or parts[:3] != ["arn", "aws", "ecr"]
                                        or parts[4] not in (self.registry_id, "*")):
                    raise EcrError("ValidationException",
                                   f"Statement[{index}]: {resource!r} is not a repository ARN "
                                   f"of registry {self.registry_id}")

    async def put(self, text: str) -> str:
        self.validate(text)
        await self.storage.db(self.store.put_registry_policy, text)
        return text

    async def get(self) -> str:
        text = await self.storage.read(self.store.registry_policy)
        if text is None:
            raise not_found()
        return text

    async def delete(self) -> str:
        text = await self.storage.db(self.store.delete_registry_policy)
        if text is None:
            raise not_found()
        return text
