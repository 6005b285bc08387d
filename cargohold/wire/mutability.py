"""ECR image tag mutability: which existing tags may not be moved to another image."""

from __future__ import annotations

import re


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def tag_is_immutable(mutability: str, exclusions: list[str], tag: str) -> bool:
    """Whether an existing tag may not be moved, under ECR's imageTagMutability rules."""
    excluded = any(_wildcard(pattern).match(tag) for pattern in exclusions)
    if mutability == "IMMUTABLE":
        return True
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False
