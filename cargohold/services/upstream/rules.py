"""Pull-through cache rules and the upstream credentials they name, the ECR way.

A rule maps local repositories `<prefix>/<rest>` to `<upstream_prefix>/<rest>` on any OCI
registry. A rule's `credentialArn` names a credential stored by
`cargohold admin upstream-credentials put`, sealed under the server key; ARNs have the shape
ECR gives Secrets Manager secrets (`...:secret:ecr-pullthroughcache/<name>`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cargohold.services.storage import Storage
from cargohold.storage.secrets import SecretDecryptionError
from cargohold.storage.upstreams import (
    PullThroughRule,
    RuleExists,
    RuleLimitReached,
    UpstreamStore,
)
from cargohold.wire.ecr import EcrError

ROOT = "ROOT"
SECRET_PREFIX = "ecr-pullthroughcache/"
CREDENTIAL_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@-]{1,512}$")
RULE_CACHE_SECONDS = 2.0
_ARN = re.compile(r"^arn:aws(-\w+)*:secretsmanager:([a-z0-9-]+):([0-9]{12}):secret:"
                  r"ecr-pullthroughcache/([a-zA-Z0-9/_+=.@-]+)$")


@dataclass(frozen=True, slots=True)
class UpstreamCredential:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class CacheTarget:
    """Where a cache repository's content comes from."""

    rule: PullThroughRule
    base_url: str  # scheme://host[:port][/path], no trailing slash
    repository: str  # the name on the upstream


def rule_not_found(prefix: str) -> EcrError:
    return EcrError("PullThroughCacheRuleNotFoundException",
                    f"No pull through cache rule exists for the prefix '{prefix}'")


def normalise_prefix(prefix: str) -> str:
    return prefix if prefix == ROOT else prefix.rstrip("/")


def upstream_base_url(url: str) -> str:
    """The upstream's base URL (https when the rule gives a bare host, as ECR's do)."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EcrError("UnsupportedUpstreamRegistryException",
                       f"upstream registry URL scheme {parts.scheme!r} is not supported "
                       "(use https:// or http://)")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise EcrError("ValidationException", f"{url!r} has an invalid port") from None
    if (not parts.hostname or parts.username is not None or parts.query or parts.fragment
            or any(c.isspace() for c in url)):
        raise EcrError("ValidationException",
                       f"{url!r} is not a registry URL (scheme://host[:port][/path], without "
                       "credentials, query or fragment)")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class RuleService:
    def __init__(self, storage: Storage, registry_id: str) -> None:
        self.storage = storage
        self.store = UpstreamStore(storage.database)
        self.registry_id = registry_id
        self._rules: list[PullThroughRule] = []
        self._loaded_at = -1e9

    def credential_arn(self, name: str) -> str:
        return (f"arn:aws:secretsmanager:{self.storage.settings.region}:{self.registry_id}:"
                f"secret:{SECRET_PREFIX}{name}")

    # -- credentials -----------------------------------------------------------------------

    def put_credential(self, name: str, username: str, password: str) -> str:
        """Store (or replace) a credential, sealed; return its ARN. Synchronous (CLI)."""
        if not CREDENTIAL_NAME.match(name):
            raise ValueError("credential names use letters, digits and / _ + = . @ - "
                             "(max 512)")
        self.store.put_credential(name, username, self.storage.keys.seal(password))
        return self.credential_arn(name)

    def _credential_name(self, arn: str) -> str:
        match = _ARN.match(arn)
        if match is None:
            raise EcrError("UnableToAccessSecretException",
                           f"{arn!r} is not an upstream credential ARN")
        _, region, account, name = match.groups()
        if region != self.storage.settings.region or account != self.registry_id:
            raise EcrError("UnableToAccessSecretException",
                           f"{arn!r} belongs to another registry or region; upstream "
                           "credentials of this registry are in "
                           f"{self.credential_arn('')}")
        return name

    def resolve_credential(self, arn: str | None) -> UpstreamCredential | None:
        """The credential an ARN names, unsealed; ECR's secret errors when it cannot be."""
        if arn is None:
            return None
        name = self._credential_name(arn)
        sealed = self.store.get_credential(name)
        if sealed is None:
            raise EcrError("SecretNotFoundException",
                           f"No upstream credential {name!r}: store it with "
                           f"`cargohold admin upstream-credentials put {name}`")
        try:
            password = self.storage.keys.unseal(sealed.secret_ciphertext)
        except SecretDecryptionError:
            raise EcrError("UnableToDecryptSecretValueException",
                           f"The upstream credential {name!r} was sealed under another "
                           "server key") from None
        return UpstreamCredential(sealed.username, password)

    # -- rules -----------------------------------------------------------------------------

    async def create(self, prefix: str, upstream_url: str, upstream_prefix: str | None,
                     upstream_registry: str | None, credential_arn: str | None
                     ) -> PullThroughRule:
        prefix = normalise_prefix(prefix)
        upstream_base_url(upstream_url)
        await self.storage.db(self.resolve_credential, credential_arn)
        try:
            rule = await self.storage.db(
                self.store.create_rule, prefix, upstream_url.rstrip("/"),
                normalise_prefix(upstream_prefix) if upstream_prefix else None,
                upstream_registry, credential_arn, self.storage.settings.upstreams.ptc_max_rules)
        except RuleExists:
            raise EcrError("PullThroughCacheRuleAlreadyExistsException",
                           f"A pull through cache rule with the prefix '{prefix}' already "
                           "exists") from None
        except RuleLimitReached:
            raise EcrError("LimitExceededException",
                           "The registry holds the most pull through cache rules allowed "
                           f"({self.storage.settings.upstreams.ptc_max_rules})") from None
        self._loaded_at = -1e9
        return rule

    async def get(self, prefix: str) -> PullThroughRule:
        prefix = normalise_prefix(prefix)
        rule = await self.storage.db(self.store.get_rule, prefix)
        if rule is None:
            raise rule_not_found(prefix)
        return rule

    async def page(self, after: str | None, limit: int) -> list[PullThroughRule]:
        return await self.storage.db(self.store.list_rules, after, limit)

    async def update(self, prefix: str, credential_arn: str | None) -> PullThroughRule:
        prefix = normalise_prefix(prefix)
        await self.get(prefix)
        await self.storage.db(self.resolve_credential, credential_arn)
        rule = await self.storage.db(self.store.update_rule, prefix,
                                     credential_arn=credential_arn)
        if rule is None:
            raise rule_not_found(prefix)
        self._loaded_at = -1e9
        return rule

    async def set_allow_push(self, prefix: str, allow: bool) -> PullThroughRule:
        rule = await self.storage.db(self.store.update_rule, normalise_prefix(prefix),
                                     allow_push=allow)
        if rule is None:
            raise rule_not_found(prefix)
        self._loaded_at = -1e9
        return rule

    async def delete(self, prefix: str) -> PullThroughRule:
        prefix = normalise_prefix(prefix)
        rule = await self.storage.db(self.store.delete_rule, prefix)
        if rule is None:
            raise rule_not_found(prefix)
        self._loaded_at = -1e9
        return rule

    # -- matching --------------------------------------------------------------------------

    async def rules(self) -> list[PullThroughRule]:
        """Every rule, re-read at most every RULE_CACHE_SECONDS (other workers' changes)."""
        if time.monotonic() - self._loaded_at > RULE_CACHE_SECONDS:
            self._rules = await self.storage.read(self.store.list_rules)
            self._loaded_at = time.monotonic()
        return self._rules

    async def target(self, repository: str) -> CacheTarget | None:
        """The rule a repository is cached through (the longest prefix wins), or None."""
        best: PullThroughRule | None = None
        rest = repository
        for rule in await self.rules():
            if rule.prefix == ROOT:
                if best is None:
                    best, rest = rule, repository
            elif (repository.startswith(rule.prefix + "/")
                  and (best is None or best.prefix == ROOT
                       or len(rule.prefix) > len(best.prefix))):
                best, rest = rule, repository[len(rule.prefix) + 1:]
        if best is None:
            return None
        try:
            return self.target_of(best, rest)
        except EcrError:
            return None

    @staticmethod
    def target_of(rule: PullThroughRule, rest: str) -> CacheTarget:
        """Where `<rule prefix>/<rest>` lives upstream."""
        upstream_prefix = rule.upstream_prefix
        if upstream_prefix in (None, ROOT):
            name = rest
        else:
            name = f"{upstream_prefix}/{rest}" if rest else str(upstream_prefix)
        return CacheTarget(rule, upstream_base_url(rule.upstream_url), name)
