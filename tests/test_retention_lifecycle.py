"""ECR lifecycle policies against a secure server: boto3, the real `aws` CLI and the
`cargohold lifecycle` commands. A preview names exactly what a run then expires; expired
images leave the audit trail with their rule; `gc` reclaims their bytes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecrhelpers import (
    SKIP_EXTERNAL,
    Artifact,
    Ecr,
    error_code,
    image,
    index_of,
    sha256,
    start_ecr,
)

from tests.retentionhelpers import blob_files

pytestmark = SKIP_EXTERNAL
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def rule(priority: int, tag_status: str = "any", count_type: str = "imageCountMoreThan",
         count: int = 1, **selection: Any) -> dict[str, Any]:
    sel: dict[str, Any] = {"tagStatus": tag_status, "countType": count_type,
                           "countNumber": count, **selection}
    if count_type != "imageCountMoreThan":
        sel.setdefault("countUnit", "days")
    return {"rulePriority": priority, "description": f"rule {priority}", "selection": sel,
            "action": {"type": "expire"}}


def text(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def raises(code: str, call: Any, /, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert error_code(info.value) == code, info.value.response
    return info.value


def push_images(ecr: Ecr, repo: str, tag_sets: list[list[str]]) -> list[Artifact]:
    pushed = []
    for tags in tag_sets:
        pushed.append(ecr.push(repo, image(), *tags))
    return pushed


BAD_POLICIES = {
    "malformed JSON": '{"rules": [ {"rulePriority": 1, ' + " " * 80,
    "rulePriority 0": text(rule(0)),
    "duplicate priorities": text(rule(1, "untagged"), rule(1, "tagged", tagPrefixList=["v"])),
    "misplaced any": text(rule(1, "any"), rule(2, "untagged")),
    "countNumber 0": text(rule(1, count=0)),
    "countNumber negative": text(rule(1, count=-1)),
    "countNumber huge": text(rule(1, count=10**15)),
    "countUnit missing": json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 3},
        "action": {"type": "expire"}}]}),
    "countUnit on a count": text(rule(1, countUnit="days")),
    "too many wildcards": text(rule(1, "tagged", tagPatternList=["*a*b*c*d*e"])),
    "unknown field": text({**rule(1), "schedule": "daily"}),
    "unknown selection field": text(rule(1, imageAgeMoreThan=3)),
    "transition": text({**rule(1), "action": {"type": "transition",
                                              "targetStorageClass": "archive"}}),
}


def test_policy_management_and_every_validation_error_changes_nothing(ecr: Ecr) -> None:
    client, repo = ecr.client, ecr.new_repo("lc")
    raises("LifecyclePolicyNotFoundException", client.get_lifecycle_policy, repositoryName=repo)
    raises("LifecyclePolicyNotFoundException", client.delete_lifecycle_policy,
           repositoryName=repo)
    raises("LifecyclePolicyNotFoundException", client.start_lifecycle_policy_preview,
           repositoryName=repo)
    raises("LifecyclePolicyPreviewNotFoundException", client.get_lifecycle_policy_preview,
           repositoryName=repo)
    good = text(rule(1, "untagged", count=2), rule(2, "any", "sinceImagePushed", 30))
    raises("RepositoryNotFoundException", client.put_lifecycle_policy,
           repositoryName=f"lc/missing-{uuid.uuid4().hex[:6]}", lifecyclePolicyText=good)
    put = client.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=good)
    assert put["lifecyclePolicyText"] == good and put["repositoryName"] == repo
    assert put["registryId"] == ecr.registry_id
    for case, bad in BAD_POLICIES.items():
        error = raises("InvalidParameterException", client.put_lifecycle_policy,
                       repositoryName=repo, lifecyclePolicyText=bad)
        assert error.response["Error"]["Message"], case
        raises("InvalidParameterException", client.start_lifecycle_policy_preview,
               repositoryName=repo, lifecyclePolicyText=bad)
        stored = client.get_lifecycle_policy(repositoryName=repo)
        assert stored["lifecyclePolicyText"] == good, case
    raises("LifecyclePolicyPreviewNotFoundException", client.get_lifecycle_policy_preview,
           repositoryName=repo)
    message = raises("InvalidParameterException", client.put_lifecycle_policy,
                     repositoryName=repo, lifecyclePolicyText=BAD_POLICIES["transition"])
    assert "transition" in message.response["Error"]["Message"]
    deleted = client.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == good
    raises("LifecyclePolicyNotFoundException", client.get_lifecycle_policy, repositoryName=repo)


def _expiring(ecr: Ecr, repo: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
    pages = ecr.client.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=repo, **kwargs)
    return {r["imageDigest"]: r for page in pages for r in page["previewResults"]}


def test_preview_then_run_expire_the_same_images_and_gc_reclaims_them(ecr: Ecr) -> None:
    repo = ecr.new_repo("lc")
    pushed = push_images(ecr, repo, [[], [], [], ["v1"], ["v2"], ["v3", "prod"], ["dev"]])
    child_a, child_b = image(), image()
    for child in (child_a, child_b):
        ecr.push(repo, child)
    index = ecr.push(repo, index_of(child_a, child_b), "multi-old")
    ecr.push(repo, image(), "multi-new")
    policy = text(rule(1, "untagged", count=1),
                  rule(2, "tagged", count=1, tagPrefixList=["v"]),
                  rule(3, "tagged", count=1, tagPatternList=["multi-*"]))
    ecr.client.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy)
    started = ecr.client.start_lifecycle_policy_preview(repositoryName=repo)
    assert started["status"] == "COMPLETE" and started["lifecyclePolicyText"] == policy
    preview = _expiring(ecr, repo, maxResults=1)
    expected = {pushed[0].digest: 1, pushed[1].digest: 1, pushed[3].digest: 2,
                pushed[4].digest: 2, index.digest: 3}
    assert {d: r["appliedRulePriority"] for d, r in preview.items()} == expected
    assert all(r["action"] == {"type": "EXPIRE"} for r in preview.values())
    assert preview[pushed[3].digest]["imageTags"] == ["v1"]
    whole = ecr.client.get_lifecycle_policy_preview(repositoryName=repo)
    assert whole["summary"] == {"expiringImageTotalCount": 5} and whole["status"] == "COMPLETE"
    untagged = ecr.client.get_lifecycle_policy_preview(repositoryName=repo,
                                                       filter={"tagStatus": "UNTAGGED"})
    assert {r["imageDigest"] for r in untagged["previewResults"]} == {pushed[0].digest,
                                                                      pushed[1].digest}
    by_tag = ecr.client.get_lifecycle_policy_preview(repositoryName=repo,
                                                     imageIds=[{"imageTag": "v2"}])
    assert [r["imageDigest"] for r in by_tag["previewResults"]] == [pushed[4].digest]
    raises("InvalidParameterException", ecr.client.get_lifecycle_policy_preview,
           repositoryName=repo, imageIds=[{"imageTag": "v2"}], maxResults=5)

    before = blob_files(ecr.data_dir)
    run = json.loads(ecr.cli("lifecycle", "run", "--output", "json").stdout)
    assert {(e["imageDigest"], e["appliedRulePriority"]) for e in run["expiring"]} == set(
        expected.items())
    assert run["images_expired"] == 5 and run["dry_run"] is False
    remaining = set(ecr.details(repo))
    gone = set(expected) | {child_a.digest, child_b.digest}
    assert not remaining & gone
    assert {pushed[2].digest, pushed[5].digest, pushed[6].digest} <= remaining
    audit = json.loads(ecr.cli("admin", "audit", "--repository", repo, "--limit", "100",
                               "--output", "json").stdout)
    logged = {json.loads(e["detail"])["imageDigest"]: json.loads(e["detail"])["rulePriority"]
              for e in audit if e["action"] == "LifecyclePolicyExpireImage"}
    assert logged == expected
    assert "lastEvaluatedAt" in ecr.client.get_lifecycle_policy(repositoryName=repo)

    report = json.loads(ecr.cli("gc", "--grace", "0", "--output", "json").stdout)
    after = blob_files(ecr.data_dir)
    kept_blobs = {sha256(b) for a in (pushed[2], pushed[5], pushed[6]) for b in a.blobs}
    assert kept_blobs <= set(after)
    assert report["bytes_reclaimed"] == sum(before[d] for d in set(before) - set(after))
    assert report["blobs_deleted"] >= 2 * 6  # config + layer of 4 images and 2 children
    again = json.loads(ecr.cli("lifecycle", "run", "--output", "json").stdout)
    assert again["images_expired"] == 0


def test_aws_cli_manages_and_previews_policies(ecr: Ecr) -> None:
    repo = ecr.new_repo("lc")
    push_images(ecr, repo, [[], [], ["keep"]])
    policy = text(rule(1, "untagged", count=1))
    put = json.loads(ecr.aws("put-lifecycle-policy", "--repository-name", repo,
                             "--lifecycle-policy-text", policy).stdout)
    assert put["lifecyclePolicyText"] == policy
    got = json.loads(ecr.aws("get-lifecycle-policy", "--repository-name", repo).stdout)
    assert got["lifecyclePolicyText"] == policy
    ecr.aws("start-lifecycle-policy-preview", "--repository-name", repo)
    preview = json.loads(ecr.aws("get-lifecycle-policy-preview", "--repository-name",
                                 repo).stdout)
    assert preview["summary"]["expiringImageTotalCount"] == 1
    assert preview["previewResults"][0]["appliedRulePriority"] == 1
    bad = ecr.aws("put-lifecycle-policy", "--repository-name", repo, "--lifecycle-policy-text",
                  BAD_POLICIES["misplaced any"], check=False)
    assert bad.returncode != 0 and "InvalidParameterException" in bad.stderr
    assert json.loads(ecr.aws("get-lifecycle-policy", "--repository-name",
                              repo).stdout)["lifecyclePolicyText"] == policy
    ecr.aws("delete-lifecycle-policy", "--repository-name", repo)
    missing = ecr.aws("get-lifecycle-policy", "--repository-name", repo, check=False)
    assert missing.returncode != 0 and "LifecyclePolicyNotFoundException" in missing.stderr


def test_cli_policy_commands(ecr: Ecr, tmp_path: Any) -> None:
    repo = ecr.new_repo("lc")
    push_images(ecr, repo, [[], [], ["keep"]])
    path = tmp_path / "policy.json"
    path.write_text(text(rule(1, "untagged", count=1)))
    ecr.cli("lifecycle", "put", repo, str(path))
    assert json.loads(ecr.cli("lifecycle", "get", repo, "--output", "json").stdout)[
        "lifecyclePolicyText"] == path.read_text()
    table = ecr.cli("lifecycle", "preview", repo).stdout
    assert "APPLIEDRULEPRIORITY" in table and "expiringImageTotalCount: 1" in table
    path.write_text(BAD_POLICIES["countNumber 0"])
    bad = ecr.cli("lifecycle", "put", repo, str(path), check=False)
    assert bad.returncode != 0 and "InvalidParameterException" in bad.stderr
    dry = json.loads(ecr.cli("lifecycle", "run", "--repository", repo, "--dry-run",
                             "--output", "json").stdout)
    assert dry["dry_run"] is True and len(dry["expiring"]) == 1 and len(ecr.details(repo)) == 3
    ecr.cli("lifecycle", "delete", repo)
    assert ecr.cli("lifecycle", "get", repo, check=False).returncode != 0


def _random_policy(rng: random.Random) -> str:
    rules = []
    priorities = sorted(rng.sample(range(1, 20), 3))
    if rng.random() < 0.7:
        rules.append(rule(priorities[0], "untagged", count=rng.randint(1, 3)))
    key = rng.choice(["tagPrefixList", "tagPatternList"])
    values = (rng.sample(["v", "rc", "prod"], rng.randint(1, 2)) if key == "tagPrefixList"
              else rng.sample(["v*", "*rc*", "prod", "*"], rng.randint(1, 2)))
    rules.append(rule(priorities[1], "tagged", count=rng.randint(1, 3), **{key: values}))
    if rng.random() < 0.5:
        rules.append(rule(priorities[2], "any", rng.choice(
            ["imageCountMoreThan", "sinceImagePushed"]), rng.randint(1, 4)))
    return text(*rules)


def test_preview_is_exactly_what_a_run_expires_on_random_repositories(ecr: Ecr) -> None:
    rng = random.Random(9)
    tag_pool = ["v1", "v2", "v1-rc", "rc2", "prod", "prod-1", "latest", "x"]
    for _ in range(3):
        repo = ecr.new_repo("lcrand")
        tag_sets = [rng.sample(tag_pool, rng.choice([0, 0, 1, 2])) for _ in range(8)]
        seen: set[str] = set()
        unique_sets = []
        for tags in tag_sets:  # a tag names one image
            tags = [t for t in tags if t not in seen]
            seen.update(tags)
            unique_sets.append(tags)
        push_images(ecr, repo, unique_sets)
        policy = _random_policy(rng)
        ecr.client.start_lifecycle_policy_preview(repositoryName=repo,
                                                  lifecyclePolicyText=policy)
        preview = set(_expiring(ecr, repo))
        ecr.client.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy)
        before = set(ecr.details(repo))
        run = json.loads(ecr.cli("lifecycle", "run", "--repository", repo, "--output",
                                 "json").stdout)
        assert {e["imageDigest"] for e in run["expiring"]} == preview, policy
        assert before - set(ecr.details(repo)) == preview, policy


@pytest.mark.skipif(not os.path.exists(FAKETIME_LIB), reason="libfaketime not installed")
def test_age_rules_with_a_shifted_clock(ecr: Ecr) -> None:
    repo = ecr.new_repo("lcage")
    pushed = push_images(ecr, repo, [["a"], ["b"]])
    ecr.request("GET", f"/v2/{repo}/manifests/a")  # pulled now: 40 days ago in 40 days
    ecr.client.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text(
        rule(1, "tagged", "sinceImagePulled", 30, tagPrefixList=["a"]),
        rule(2, "any", "sinceImagePushed", 30)))
    env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    soon = _cli_at(ecr, "+10d", env, "lifecycle", "run", "--repository", repo, "--dry-run")
    assert soon["expiring"] == []
    later = _cli_at(ecr, "+40d", env, "lifecycle", "run", "--repository", repo)
    assert {(e["imageDigest"], e["appliedRulePriority"]) for e in later["expiring"]} == {
        (pushed[0].digest, 1), (pushed[1].digest, 2)}
    assert ecr.details(repo) == {}


def _cli_at(ecr: Ecr, offset: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """The cargohold CLI with its clock shifted by `offset` (libfaketime)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--output", "json",
                             "--data-dir", str(ecr.data_dir)], capture_output=True, text=True,
                            timeout=120, env={**clean, **env, "FAKETIME": offset}, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)  # type: ignore[no-any-return]
