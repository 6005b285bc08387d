"""ECR lifecycle policies: the rule language, validated as ECR validates it.

A policy is `{"rules": [rule, ...]}`; a rule is `rulePriority`, optional `description`,
`selection` (`tagStatus`, `tagPrefixList` | `tagPatternList`, `countType`, `countUnit`,
`countNumber`) and `action` (`type: expire`). Errors are ECR's InvalidParameterException with
its "Lifecycle policy validation failure" wording.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from cargohold.wire.ecr import EcrError

MAX_COUNT_NUMBER = 2**31 - 1
MAX_WILDCARDS = 4
MAX_LIST_VALUES = 100
_TAG_PREFIX = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")
_TAG_WILDCARD = re.compile(r"^[a-zA-Z0-9._*-]{1,128}$")
_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit",
                   "countNumber"}
COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled")
TAG_STATUSES = ("tagged", "untagged", "any")


@cache
def _wildcard(pattern: str) -> re.Pattern[str]:
    """A tag pattern as a regular expression: `*` matches any run of characters."""
    return re.compile("".join(".*" if part == "*" else re.escape(part)
                              for part in re.split(r"(\*)", pattern)) + r"\Z")


def policy_error(detail: str) -> EcrError:
    return EcrError("InvalidParameterException",
                    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                    f"'Lifecycle policy validation failure: {detail}'")


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int
    description: str | None
    tag_status: str
    tag_prefixes: tuple[str, ...]
    tag_patterns: tuple[str, ...]
    count_type: str
    count_number: int

    def selects(self, tags: tuple[str, ...]) -> bool:
        """Whether an image with these tags matches the rule's tag selection: every prefix
        (or pattern) of the list must match one of its tags."""
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not tags
        if not tags:
            return False
        if self.tag_prefixes:
            return all(any(t.startswith(p) for t in tags) for p in self.tag_prefixes)
        return all(any(_wildcard(p).match(t) for t in tags) for p in self.tag_patterns)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]   # in priority order


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise policy_error(f"object instance has properties which are not allowed by the "
                           f"schema: {json.dumps(extra)} (at {where})")


def _integer(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise policy_error(f"{name} must be an integer (at {where})")
    if not 1 <= value <= MAX_COUNT_NUMBER:
        raise policy_error(f"{name} {value} is out of range: it must be between 1 and "
                           f"{MAX_COUNT_NUMBER} (at {where})")
    return value


def _tag_list(selection: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = selection.get(key)
    if values is None:
        return ()
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise policy_error(f"{key} must be a non-empty list of strings (at {where})")
    if len(set(values)) > MAX_LIST_VALUES:
        raise policy_error(f"{key} can have at most {MAX_LIST_VALUES} unique values "
                           f"(at {where})")
    for value in values:
        if key == "tagPatternList":
            if value.count("*") > MAX_WILDCARDS:
                raise policy_error(f"tagPatternList value {value!r} has more than "
                                   f"{MAX_WILDCARDS} wildcards (at {where})")
            if not _TAG_WILDCARD.match(value):
                raise policy_error(f"invalid tag pattern {value!r} (at {where})")
        elif not _TAG_PREFIX.match(value):
            raise policy_error(f"invalid tag prefix {value!r} (at {where})")
    return tuple(dict.fromkeys(values))


def _rule(raw: Any, index: int) -> Rule:
    where = f"/rules/{index}"
    if not isinstance(raw, dict):
        raise policy_error(f"a rule must be an object (at {where})")
    _unknown(set(raw), _RULE_KEYS, where)
    for key in ("rulePriority", "selection", "action"):
        if key not in raw:
            raise policy_error(f'object has missing required properties (["{key}"]) '
                               f"(at {where})")
    priority = _integer(raw["rulePriority"], "rulePriority", where)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise policy_error(f"description must be a string (at {where})")
    action = raw["action"]
    if not isinstance(action, dict) or "type" not in action:
        raise policy_error(f'action must be an object with a "type" (at {where}/action)')
    if isinstance(action["type"], str) and action["type"].lower() == "transition":
        raise policy_error(f"action type 'transition' is not supported: Cargohold has no "
                           f"archive storage class; use 'expire' (at {where}/action)")
    _unknown(set(action), {"type"}, f"{where}/action")
    if action["type"] != "expire":
        raise policy_error(f"action type {action['type']!r} is invalid: it must be 'expire' "
                           f"(at {where}/action)")
    selection = raw["selection"]
    swhere = f"{where}/selection"
    if not isinstance(selection, dict):
        raise policy_error(f"selection must be an object (at {swhere})")
    _unknown(set(selection), _SELECTION_KEYS, swhere)
    for key in ("tagStatus", "countType", "countNumber"):
        if key not in selection:
            raise policy_error(f'object has missing required properties (["{key}"]) '
                               f"(at {swhere})")
    tag_status = selection["tagStatus"]
    if tag_status not in TAG_STATUSES:
        raise policy_error(f"tagStatus {tag_status!r} is invalid: it must be one of "
                           f"{', '.join(TAG_STATUSES)} (at {swhere})")
    prefixes = _tag_list(selection, "tagPrefixList", swhere)
    patterns = _tag_list(selection, "tagPatternList", swhere)
    if prefixes and patterns:
        raise policy_error(f"a rule can have tagPrefixList or tagPatternList, not both "
                           f"(at {swhere})")
    if tag_status == "tagged" and not (prefixes or patterns):
        raise policy_error(f"tagStatus 'tagged' requires a tagPrefixList or a tagPatternList "
                           f"(at {swhere})")
    if tag_status != "tagged" and (prefixes or patterns):
        raise policy_error(f"tagPrefixList and tagPatternList are allowed only with tagStatus "
                           f"'tagged' (at {swhere})")
    count_type = selection["countType"]
    if count_type not in COUNT_TYPES:
        raise policy_error(f"countType {count_type!r} is invalid: it must be one of "
                           f"{', '.join(COUNT_TYPES)} (at {swhere})")
    if count_type == "imageCountMoreThan":
        if "countUnit" in selection:
            raise policy_error(f"countUnit is not allowed with countType imageCountMoreThan "
                               f"(at {swhere})")
    elif selection.get("countUnit") != "days":
        if "countUnit" not in selection:
            raise policy_error(f"countUnit 'days' is required with countType {count_type} "
                               f"(at {swhere})")
        raise policy_error(f"countUnit {selection['countUnit']!r} is invalid: it must be "
                           f"'days' (at {swhere})")
    count = _integer(selection["countNumber"], "countNumber", swhere)
    return Rule(priority, description, tag_status, prefixes, patterns, count_type, count)


def parse_policy(text: str) -> Policy:
    """The validated policy, or InvalidParameterException saying what is wrong."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise policy_error(f"the policy is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise policy_error("the policy must be a JSON object")
    _unknown(set(document), {"rules"}, "/")
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise policy_error('the policy needs a non-empty "rules" list')
    rules = [_rule(raw, index) for index, raw in enumerate(raw_rules)]
    priorities = [rule.priority for rule in rules]
    duplicates = sorted({p for p in priorities if priorities.count(p) > 1})
    if duplicates:
        raise policy_error(f"rulePriority must be unique; duplicated: {duplicates}")
    rules.sort(key=lambda rule: rule.priority)
    any_rules = [rule for rule in rules if rule.tag_status == "any"]
    if len(any_rules) > 1:
        raise policy_error("only one rule can have tagStatus 'any'")
    if any_rules and rules[-1] is not any_rules[0]:
        raise policy_error("the rule with tagStatus 'any' must have the highest rulePriority")
    if sum(rule.tag_status == "untagged" for rule in rules) > 1:
        raise policy_error("only one rule can select untagged images (tagStatus 'untagged')")
    return Policy(tuple(rules))
