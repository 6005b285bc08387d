"""IAM-style policy documents: validation and evaluation, as ECR applies them.

Evaluation follows IAM: an explicit Deny in any applicable statement wins; otherwise any Allow
grants; otherwise the request is denied. Identity policies (attached to users) name resources;
repository policies name principals and apply to their repository; the registry policy names
principals and resources and applies registry-wide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

MAX_POLICY_LENGTH = 10_240
_SUPPORTED_KEYS = {"Sid", "Effect", "Principal", "Action", "Resource"}


class PolicyError(ValueError):
    """A policy document that is not valid (the message says why)."""


class PolicyKind(Enum):
    IDENTITY = "identity"
    REPOSITORY = "repository"
    REGISTRY = "registry"


@dataclass(frozen=True, slots=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] | None
    principals: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: an ARN, or None for an anonymous caller."""

    arn: str | None
    account: str

    @property
    def anonymous(self) -> bool:
        return self.arn is None


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{field} must be a string or a non-empty list of strings")


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if isinstance(value, dict) and set(value) == {"AWS"}:
        return _strings(value["AWS"], "Principal.AWS")
    raise PolicyError('Principal must be "*" or {"AWS": ...}')


def parse_policy(text: str, kind: PolicyKind) -> Policy:
    """Validate a policy document; refuse what it cannot evaluate exactly (e.g. Condition)."""
    if len(text) > MAX_POLICY_LENGTH:
        raise PolicyError(f"policy is longer than {MAX_POLICY_LENGTH} characters")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"policy is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError("policy must be a JSON object")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"unsupported policy keys: {', '.join(sorted(unknown))}")
    if document.get("Version", "2012-10-17") not in ("2012-10-17", "2008-10-17"):
        raise PolicyError("Version must be 2012-10-17 or 2008-10-17")
    raw = document.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise PolicyError("Statement must be a non-empty list")
    statements = []
    for index, item in enumerate(raw):
        where = f"Statement[{index}]"
        if not isinstance(item, dict):
            raise PolicyError(f"{where} must be an object")
        unsupported = set(item) - _SUPPORTED_KEYS
        if unsupported:
            raise PolicyError(f"{where}: unsupported keys {', '.join(sorted(unsupported))}")
        effect = item.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"{where}: Effect must be Allow or Deny")
        if "Action" not in item:
            raise PolicyError(f"{where}: Action is required")
        actions = _strings(item["Action"], f"{where}.Action")
        for action in actions:
            if action != "*" and not re.fullmatch(r"[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+", action):
                raise PolicyError(f"{where}: invalid action {action!r}")
        if kind is PolicyKind.IDENTITY:
            if "Principal" in item:
                raise PolicyError(f"{where}: an identity policy has no Principal")
            if "Resource" not in item:
                raise PolicyError(f"{where}: Resource is required")
            resources: tuple[str, ...] | None = _strings(item["Resource"], f"{where}.Resource")
            principals = None
        else:
            if "Principal" not in item:
                raise PolicyError(f"{where}: Principal is required")
            principals = _principals(item["Principal"])
            if kind is PolicyKind.REGISTRY and "Resource" not in item:
                raise PolicyError(f"{where}: Resource is required in a registry policy")
            resources = (_strings(item["Resource"], f"{where}.Resource")
                         if "Resource" in item else None)
        statements.append(Statement(effect, actions, resources, principals))
    return Policy(tuple(statements))


@lru_cache(maxsize=4096)
def _glob(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE if case_insensitive else 0)


def _matches_any(patterns: Iterable[str], value: str, case_insensitive: bool = False) -> bool:
    return any(_glob(p, case_insensitive).match(value) for p in patterns)


def _principal_matches(principals: tuple[str, ...], caller: Caller) -> bool:
    for principal in principals:
        if principal == "*":
            return True
        if caller.anonymous:
            continue
        if principal in (caller.account, f"arn:aws:iam::{caller.account}:root"):
            return True
        if principal == caller.arn:
            return True
    return False


def evaluate(policies: Iterable[tuple[Policy, PolicyKind]], caller: Caller, action: str,
             resource: str) -> bool:
    """IAM evaluation: explicit Deny wins, then any Allow, else implicit deny."""
    allowed = False
    for policy, kind in policies:
        for statement in policy.statements:
            if not _matches_any(statement.actions, action, case_insensitive=True):
                continue
            if statement.resources is not None and not _matches_any(statement.resources,
                                                                     resource):
                continue
            if kind is not PolicyKind.IDENTITY and not _principal_matches(
                    statement.principals or (), caller):
                continue
            if kind is PolicyKind.IDENTITY and caller.anonymous:
                continue
            if statement.effect == "Deny":
                return False
            allowed = True
    return allowed


ADMINISTRATOR_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Sid": "AdministratorAccess", "Effect": "Allow", "Action": "*",
                   "Resource": "*"}],
})
