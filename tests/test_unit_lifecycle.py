"""Lifecycle-policy rules and evaluation, on the evaluator with an injected clock."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from cargohold.services.retention.lifecycle import DAY_US, evaluate
from cargohold.storage.lifecycle import ImageFacts
from cargohold.wire.ecr import EcrError
from cargohold.wire.lifecycle import Policy, parse_policy

NOW = 1_800_000_000 * 1_000_000


def rule(priority: int, tag_status: str = "any", count_type: str = "imageCountMoreThan",
         count: int = 1, **selection: Any) -> dict[str, Any]:
    sel: dict[str, Any] = {"tagStatus": tag_status, "countType": count_type,
                           "countNumber": count, **selection}
    if count_type != "imageCountMoreThan":
        sel.setdefault("countUnit", "days")
    return {"rulePriority": priority, "selection": sel, "action": {"type": "expire"}}


def policy(*rules: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"rules": list(rules)}))


def img(digest: str, *tags: str, days_ago: float = 0,
        pulled_days_ago: float | None = None) -> ImageFacts:
    pulled = None if pulled_days_ago is None else NOW - int(pulled_days_ago * DAY_US)
    return ImageFacts(digest, tags, NOW - int(days_ago * DAY_US), pulled)


def expired(p: Policy, images: list[ImageFacts]) -> dict[str, int]:
    return {e.image.digest: e.rule.priority for e in evaluate(p, images, NOW)}


def test_ecr_example_a_an_image_expires_once_by_its_first_rule() -> None:
    # ECR's "Example A": rule 1 keeps one alpha image, rule 2 one beta image.
    images = [img("A", "alpha-1", "beta-1", days_ago=10), img("B", "alpha-2", days_ago=9),
              img("C", "beta-2", days_ago=8)]
    p = policy(rule(1, "tagged", count=1, tagPrefixList=["alpha"]),
               rule(2, "tagged", count=1, tagPrefixList=["beta"]))
    assert expired(p, images) == {"A": 1}


def test_ecr_example_b_every_listed_prefix_must_match() -> None:
    images = [img("A", "alpha-1", "beta-1", "gamma-1", days_ago=10),
              img("B", "alpha-2", "beta-2", days_ago=9),
              img("C", "alpha-3", "beta-3", "gamma-2", days_ago=8)]
    p = policy(rule(1, "tagged", count=1, tagPrefixList=["alpha", "beta"]),
               rule(2, "tagged", count=1, tagPrefixList=["gamma"]))
    # Rule 1 selects A, B, C (each has an alpha and a beta tag), keeps C, expires A and B.
    assert expired(p, images) == {"A": 1, "B": 1}


def test_selected_images_are_protected_from_lower_rules_but_still_counted() -> None:
    images = [img("p1", "prod-1", days_ago=5), img("p2", "prod-2", days_ago=4),
              img("d1", "dev-1", days_ago=3), img("u1", days_ago=2)]
    # Rule 1 keeps 9999 prod images: it expires none, but protects both from rule 2.
    p = policy(rule(1, "tagged", count=9999, tagPatternList=["prod-*"]),
               rule(2, "any", count=2))
    # Rule 2 counts all four (newest u1, d1 kept), so p1 and p2 are beyond the count, but
    # rule 1 selected them: nothing expires.
    assert expired(p, images) == {}
    p = policy(rule(1, "tagged", count=9999, tagPatternList=["prod-*"]), rule(2, "any", count=1))
    assert expired(p, images) == {"d1": 2}


def test_since_pushed_and_since_pulled_with_fallback_to_push_time() -> None:
    images = [img("old-unpulled", "a", days_ago=40), img("old-pulled", "b", days_ago=40,
                                                         pulled_days_ago=2),
              img("old-pulled-long-ago", "c", days_ago=40, pulled_days_ago=35),
              img("new", "d", days_ago=1)]
    pushed = policy(rule(1, "any", "sinceImagePushed", 30))
    assert set(expired(pushed, images)) == {"old-unpulled", "old-pulled", "old-pulled-long-ago"}
    pulled = policy(rule(1, "any", "sinceImagePulled", 30))
    assert set(expired(pulled, images)) == {"old-unpulled", "old-pulled-long-ago"}


def test_untagged_rule_and_wildcards() -> None:
    images = [img("u1", days_ago=3), img("u2", days_ago=2), img("u3", days_ago=1),
              img("r1", "release-1.0-rc", days_ago=4), img("r2", "release-2.0", days_ago=3)]
    p = policy(rule(1, "untagged", count=1),
               rule(2, "tagged", count=1, tagPatternList=["release-*-rc"]),
               rule(3, "any", "sinceImagePushed", 2))
    assert expired(p, images) == {"u1": 1, "u2": 1, "r2": 3}


def _reference(p: Policy, images: list[ImageFacts], now: int) -> dict[str, int]:
    """ECR's rules restated per image: the first rule whose tag selection matches an image
    decides it; it expires the image if the image is among that rule's candidates."""
    decided: dict[str, int] = {}
    for image in images:
        for r in p.rules:
            if not r.selects(image.tags):
                continue
            selected = [i for i in images if r.selects(i.tags)]
            if r.count_type == "imageCountMoreThan":
                rank = sorted(selected, key=lambda i: (i.pushed_at, i.digest), reverse=True)
                if image in rank[r.count_number:]:
                    decided[image.digest] = r.priority
            else:
                when = image.pushed_at
                if r.count_type == "sinceImagePulled" and image.last_pulled_at:
                    when = image.last_pulled_at
                if when < now - r.count_number * DAY_US:
                    decided[image.digest] = r.priority
            break
    return decided


def _random_policy(rng: random.Random) -> Policy:
    rules, priorities = [], rng.sample(range(1, 50), 4)
    for priority in sorted(priorities)[: rng.randint(1, 3)]:
        count_type = rng.choice(["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"])
        status = rng.choice(["tagged", "tagged", "untagged"])
        extra: dict[str, Any] = {}
        if status == "tagged":
            if rng.random() < 0.5:
                extra["tagPrefixList"] = rng.sample(["v", "prod", "dev", "v1", "rc"],
                                                    rng.randint(1, 2))
            else:
                extra["tagPatternList"] = rng.sample(["v*", "*-rc", "prod*", "*1*", "dev"],
                                                     rng.randint(1, 2))
        rules.append(rule(priority, status, count_type, rng.randint(1, 6), **extra))
    if sum(r["selection"]["tagStatus"] == "untagged" for r in rules) > 1:
        rules = [r for r in rules if r["selection"]["tagStatus"] != "untagged"] or rules[:1]
    if rng.random() < 0.5:
        rules.append(rule(99, "any", rng.choice(["imageCountMoreThan", "sinceImagePushed"]),
                          rng.randint(1, 8)))
    return policy(*rules)


def _random_images(rng: random.Random) -> list[ImageFacts]:
    names = ["v1", "v2", "v10", "prod", "prod-2", "dev", "dev-1", "x-rc", "v1-rc", "latest"]
    images = []
    for index in range(rng.randint(0, 25)):
        tags = tuple(rng.sample(names, rng.choice([0, 0, 1, 1, 2, 3])))
        pulled = rng.choice([None, rng.uniform(0, 60)])
        images.append(img(f"sha256:{index:064x}", *tags, days_ago=rng.uniform(0, 60),
                          pulled_days_ago=pulled))
    return images


def test_evaluator_agrees_with_the_rules_restated_on_random_repositories() -> None:
    rng = random.Random(20261201)
    for _ in range(400):
        p, images = _random_policy(rng), _random_images(rng)
        assert expired(p, images) == _reference(p, images, NOW), (p, images)


BASE = rule(1, "tagged", count=1, tagPrefixList=["v"])


@pytest.mark.parametrize(("document", "message"), [
    ("{not json", "not valid JSON"),
    ('{"rules": []}', "non-empty"),
    ('{"rules": [], "extra": 1}', "not allowed"),
    (json.dumps({"rules": [{**BASE, "rulePriority": 0}]}), "rulePriority 0 is out of range"),
    (json.dumps({"rules": [BASE, {**rule(1, "untagged")}]}), "unique"),
    (json.dumps({"rules": [rule(1, "any"), rule(2, "untagged")]}), "highest rulePriority"),
    (json.dumps({"rules": [rule(1, "untagged"), rule(2, "untagged")]}), "only one rule"),
    (json.dumps({"rules": [rule(1, "any", count=0)]}), "countNumber 0 is out of range"),
    (json.dumps({"rules": [rule(1, "any", count=-3)]}), "countNumber -3 is out of range"),
    (json.dumps({"rules": [rule(1, "any", count=10**12)]}), "out of range"),
    (json.dumps({"rules": [rule(1, "any", count="5")]}), "must be an integer"),
    (json.dumps({"rules": [{**rule(1, "any", "sinceImagePushed", 3),
                            "selection": {"tagStatus": "any", "countType": "sinceImagePushed",
                                          "countNumber": 3}}]}), "countUnit 'days' is required"),
    (json.dumps({"rules": [rule(1, "any", countUnit="days")]}), "not allowed with countType"),
    (json.dumps({"rules": [rule(1, "any", "sinceImagePushed", 3, countUnit="hours")]}),
     "must be 'days'"),
    (json.dumps({"rules": [rule(1, "tagged", tagPatternList=["a*b*c*d*e*f"])]}),
     "more than 4 wildcards"),
    (json.dumps({"rules": [rule(1, "tagged")]}), "requires a tagPrefixList"),
    (json.dumps({"rules": [rule(1, "untagged", tagPrefixList=["v"])]}), "only with tagStatus"),
    (json.dumps({"rules": [rule(1, "tagged", tagPrefixList=["v"], tagPatternList=["v*"])]}),
     "not both"),
    (json.dumps({"rules": [{**BASE, "unknown": 1}]}), "not allowed"),
    (json.dumps({"rules": [rule(1, "any", storageClass="standard")]}), "not allowed"),
    (json.dumps({"rules": [{**BASE, "action": {"type": "transition",
                                               "targetStorageClass": "archive"}}]}),
     "'transition' is not supported"),
    (json.dumps({"rules": [{**BASE, "action": {"type": "delete"}}]}), "must be 'expire'"),
    (json.dumps({"rules": [rule(1, "sometimes")]}), "tagStatus 'sometimes' is invalid"),
    (json.dumps({"rules": [rule(1, "any", "imageCountLessThan")]}), "countType"),
    (json.dumps({"rules": [{"rulePriority": 1, "action": {"type": "expire"}}]}),
     "missing required properties"),
])
def test_invalid_policies_are_refused_with_ecr_errors(document: str, message: str) -> None:
    with pytest.raises(EcrError) as info:
        parse_policy(document)
    assert info.value.name == "InvalidParameterException"
    assert "Lifecycle policy validation failure" in info.value.message
    assert message in info.value.message, info.value.message


def test_an_untagged_rule_beside_an_any_rule_is_accepted() -> None:
    p = policy(rule(1, "untagged", count=1), rule(2, "any", "sinceImagePushed", 30))
    assert [r.tag_status for r in p.rules] == ["untagged", "any"]
