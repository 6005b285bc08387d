"""The one authorisation point: may this principal perform this ECR action on this repository?"""

from __future__ import annotations

from collections.abc import Iterable

from cargohold.services.actions import SCOPE_ACTIONS, VISIBLE_WITH, scope_of
from cargohold.services.identity import Principal
from cargohold.services.policy import (
    Caller,
    Policy,
    PolicyError,
    PolicyKind,
    evaluate,
    parse_policy,
)
from cargohold.storage.ecr_settings import EcrSettingsStore
from cargohold.storage.identity import IdentityStore


class Authorizer:
    """Evaluates identity, repository and registry policies (or a token's granted scopes)."""

    def __init__(self, store: IdentityStore, *, registry_id: str, region: str,
                 open_access: bool = False) -> None:
        self.store = store
        self.registry_settings = EcrSettingsStore(store.database)
        self.registry_id = registry_id
        self.region = region
        self.open_access = open_access

    def repository_arn(self, repository: str) -> str:
        return f"arn:aws:ecr:{self.region}:{self.registry_id}:repository/{repository}"

    def caller(self, principal: Principal) -> Caller:
        arn = None if principal.anonymous else (
            f"arn:aws:iam::{self.registry_id}:user/{principal.name}")
        return Caller(arn, self.registry_id)

    def is_allowed(self, principal: Principal, action: str, repository: str | None) -> bool:
        """Sync: reads policies from the database."""
        if self.open_access:
            return True
        if principal.token_access is not None and repository is not None:
            return scope_of(action) in principal.token_access.get(repository, frozenset())
        identity, resource = self.store.policies_for(principal.user_id, repository)
        registry = self.registry_settings.registry_policy()
        return self._evaluate(principal, identity, resource, [action], repository, registry)

    def allowed_repositories(self, principal: Principal, repositories: list[str],
                             actions: Iterable[str]) -> list[str]:
        """The repositories on which every one of `actions` is allowed (sync: reads the DB)."""
        wanted = sorted(actions)
        if self.open_access:
            return list(repositories)
        if principal.token_access is not None:
            return [name for name in repositories if all(
                scope_of(action) in principal.token_access.get(name, frozenset())
                for action in wanted)]
        identity, _ = self.store.policies_for(principal.user_id, None)
        resources = self.store.repository_policies(repositories)
        registry = self.registry_settings.registry_policy()
        return [name for name in repositories if self._evaluate(
            principal, identity, resources.get(name), wanted, name, registry)]

    def granted_scopes(self, principal: Principal, repository: str,
                       requested: Iterable[str]) -> list[str]:
        """The subset of requested token scopes that the policies allow."""
        wanted = set(requested)
        if "*" in wanted:
            wanted = set(SCOPE_ACTIONS)
        wanted &= set(SCOPE_ACTIONS)
        if self.open_access:
            return sorted(wanted)
        identity, resource = self.store.policies_for(principal.user_id, repository)
        registry = self.registry_settings.registry_policy()
        return sorted(scope for scope in wanted if self._evaluate(
            principal, identity, resource, sorted(SCOPE_ACTIONS[scope]), repository, registry))

    def visible(self, principal: Principal, repositories: list[str],
                actions: Iterable[str] = VISIBLE_WITH) -> list[str]:
        """The repositories a listing may show this principal (any of `actions` allowed)."""
        if self.open_access:
            return repositories
        identity, _ = self.store.policies_for(principal.user_id, None)
        resources = self.store.repository_policies(repositories)
        registry = self.registry_settings.registry_policy()
        return [name for name in repositories if any(
            self._evaluate(principal, identity, resources.get(name), [action], name, registry)
            for action in actions)]

    def _evaluate(self, principal: Principal, identity: list[str], resource: str | None,
                  actions: list[str], repository: str | None, registry: str | None) -> bool:
        """Identity, repository and registry policies together: explicit Deny in any of them
        wins, then any Allow."""
        policies: list[tuple[Policy, PolicyKind]] = []
        for text in identity:
            policies.append((_parse(text, PolicyKind.IDENTITY), PolicyKind.IDENTITY))
        if resource is not None:
            policies.append((_parse(resource, PolicyKind.REPOSITORY), PolicyKind.REPOSITORY))
        if registry is not None:
            policies.append((_parse(registry, PolicyKind.REGISTRY), PolicyKind.REGISTRY))
        caller = self.caller(principal)
        target = self.repository_arn(repository) if repository else "*"
        return all(evaluate(policies, caller, action, target) for action in actions)


def _parse(text: str, kind: PolicyKind) -> Policy:
    try:
        return _cached_parse(text, kind)
    except PolicyError:
        # Stored policies were validated on the way in; an unreadable one grants nothing.
        return Policy(())


_PARSED: dict[tuple[str, PolicyKind], Policy] = {}


def _cached_parse(text: str, kind: PolicyKind) -> Policy:
    key = (text, kind)
    policy = _PARSED.get(key)
    if policy is None:
        policy = parse_policy(text, kind)
        if len(_PARSED) > 2048:
            _PARSED.clear()
        _PARSED[key] = policy
    return policy
