"""Pull-through cache rules over the ECR API (boto3, the aws CLI, raw SigV4 for what boto3
refuses to send) and the upstream credentials of `cargohold admin upstream-credentials`.

Every exception the model lists for the five operations is provoked by bad input, and the
rules, credentials and repositories are described before and after: nothing changed.
(ServerException is no bad-input error; ECR's ValidationException of Delete/Validate has no
trigger here, their inputs are fully checked against the model: InvalidParameterException.)
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecrhelpers import SKIP_EXTERNAL, Ecr, assert_aws_error, error_code, start_ecr

pytestmark = SKIP_EXTERNAL
UPSTREAM = "http://127.0.0.1:9"  # never contacted by these tests but Validate


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def put_credential(ecr: Ecr, name: str, username: str = "robot",
                   password: str = "s3cret-pass", env: dict[str, str] | None = None) -> str:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
    run_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "cargohold", "admin", "upstream-credentials", "put", name,
         "--username", username, "--password-stdin", "--data-dir", str(ecr.data_dir)],
        input=password + "\n", capture_output=True, text=True, timeout=60, env=run_env,
        check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def prefix() -> str:
    return f"ptc-{uuid.uuid4().hex[:10]}"


def rules_state(ecr: Ecr) -> dict[str, Any]:
    rules = []
    for page in ecr.client.get_paginator("describe_pull_through_cache_rules").paginate():
        rules.extend(page["pullThroughCacheRules"])
    with sqlite3.connect(ecr.data_dir / "metadata.db") as db:
        credentials = db.execute("SELECT * FROM upstream_credentials ORDER BY name").fetchall()
    return {"rules": sorted(rules, key=lambda r: r["ecrRepositoryPrefix"]),
            "credentials": credentials, "repositories": ecr.snapshot()}


@pytest.fixture
def unchanged(ecr: Ecr) -> Iterator[None]:
    before = rules_state(ecr)
    yield
    assert rules_state(ecr) == before


def test_credential_is_sealed_and_its_arn_names_it(ecr: Ecr) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    arn = put_credential(ecr, "team/docker-hub", password=password)
    assert arn == (f"arn:aws:secretsmanager:us-east-1:{ecr.registry_id}:secret:"
                   "ecr-pullthroughcache/team/docker-hub")
    database = (ecr.data_dir / "metadata.db").read_bytes()
    assert password.encode() not in database, "the password is stored in the clear"
    listed = ecr.cli("admin", "upstream-credentials", "list").stdout
    assert "team/docker-hub" in listed and password not in listed
    bad = ecr.cli("admin", "upstream-credentials", "put", "bad name!", "--username", "u",
                  "--password-stdin", stdin="x\n", check=False)
    assert bad.returncode != 0 and "bad name!" not in ecr.cli(
        "admin", "upstream-credentials", "list").stdout


def test_rule_lifecycle(ecr: Ecr) -> None:
    name = prefix()
    arn = put_credential(ecr, f"cred-{name}")
    created = ecr.client.create_pull_through_cache_rule(
        ecrRepositoryPrefix=name, upstreamRegistryUrl="registry.example.com",
        upstreamRepositoryPrefix="library", credentialArn=arn, upstreamRegistry="docker-hub")
    assert created["ecrRepositoryPrefix"] == name
    assert created["upstreamRegistryUrl"] == "registry.example.com"
    assert created["upstreamRepositoryPrefix"] == "library"
    assert created["credentialArn"] == arn and created["registryId"] == ecr.registry_id
    described = ecr.client.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[name])
    [rule] = described["pullThroughCacheRules"]
    assert rule["upstreamRegistry"] == "docker-hub" and rule["credentialArn"] == arn
    other = put_credential(ecr, f"cred2-{name}")
    updated = ecr.client.update_pull_through_cache_rule(ecrRepositoryPrefix=name,
                                                        credentialArn=other)
    assert updated["credentialArn"] == other and "updatedAt" in updated
    valid = ecr.client.validate_pull_through_cache_rule(ecrRepositoryPrefix=name)
    assert valid["isValid"] is False and "registry.example.com" in valid["failure"]
    deleted = ecr.client.delete_pull_through_cache_rule(ecrRepositoryPrefix=name)
    assert deleted["ecrRepositoryPrefix"] == name and deleted["credentialArn"] == other
    with pytest.raises(ClientError) as exc:
        ecr.client.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[name])
    assert error_code(exc.value) == "PullThroughCacheRuleNotFoundException"


def test_describe_pages(ecr: Ecr) -> None:
    names = sorted(prefix() for _ in range(5))
    for name in names:
        ecr.client.create_pull_through_cache_rule(ecrRepositoryPrefix=name,
                                                  upstreamRegistryUrl=UPSTREAM)
    seen = []
    for page in ecr.client.get_paginator("describe_pull_through_cache_rules").paginate(
            PaginationConfig={"PageSize": 2}):
        assert len(page["pullThroughCacheRules"]) <= 2
        seen += [r["ecrRepositoryPrefix"] for r in page["pullThroughCacheRules"]]
    assert [n for n in seen if n in names] == names and len(seen) == len(set(seen))
    for name in names:
        ecr.client.delete_pull_through_cache_rule(ecrRepositoryPrefix=name)


def test_aws_cli_with_an_http_upstream_url(ecr: Ecr, tmp_path: Any) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[default]\ncli_follow_urlparam = false\n")
    name = prefix()
    cmd = ["aws", "ecr", "create-pull-through-cache-rule", "--ecr-repository-prefix", name,
           "--upstream-registry-url", "http://127.0.0.1:5999", "--endpoint-url", ecr.url]
    env = {**ecr.aws_env(), "AWS_CONFIG_FILE": str(config)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    [rule] = ecr.client.describe_pull_through_cache_rules(
        ecrRepositoryPrefixes=[name])["pullThroughCacheRules"]
    assert rule["upstreamRegistryUrl"] == "http://127.0.0.1:5999"
    ecr.client.delete_pull_through_cache_rule(ecrRepositoryPrefix=name)


# -- bad input: every listed exception, nothing changed ---------------------------------------

@pytest.fixture(scope="module")
def existing(ecr: Ecr) -> str:
    name = prefix()
    ecr.client.create_pull_through_cache_rule(ecrRepositoryPrefix=name,
                                              upstreamRegistryUrl=UPSTREAM)
    return name


def foreign_arn(ecr: Ecr) -> str:
    return ("arn:aws:secretsmanager:us-east-1:999999999999:secret:ecr-pullthroughcache/"
            "someone-elses")


def missing_arn(ecr: Ecr) -> str:
    return (f"arn:aws:secretsmanager:us-east-1:{ecr.registry_id}:secret:"
            f"ecr-pullthroughcache/absent-{uuid.uuid4().hex[:8]}")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("params", "code"), [
    ({"ecrRepositoryPrefix": "UPPER", "upstreamRegistryUrl": UPSTREAM},
     "InvalidParameterException"),
    ({"ecrRepositoryPrefix": "x", "upstreamRegistryUrl": UPSTREAM},
     "InvalidParameterException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": UPSTREAM,
      "registryId": "000000000000"}, "InvalidParameterException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": UPSTREAM,
      "upstreamRegistry": "not-a-registry"}, "InvalidParameterException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": "http://h/?q=1"},
     "ValidationException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": "https://u:p@host"},
     "ValidationException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": "http://"},
     "ValidationException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": UPSTREAM,
      "customRoleArn": "arn:aws:iam::123456789012:role/x"}, "ValidationException"),
    ({"ecrRepositoryPrefix": "fresh-one", "upstreamRegistryUrl": "ftp://mirror.example"},
     "UnsupportedUpstreamRegistryException"),
])
def test_create_refuses(ecr: Ecr, params: dict[str, Any], code: str) -> None:
    assert_aws_error(ecr.signed("CreatePullThroughCacheRule", params), code)


@pytest.mark.usefixtures("unchanged")
def test_create_refuses_an_existing_prefix(ecr: Ecr, existing: str) -> None:
    for name in (existing, existing + "/"):
        assert_aws_error(ecr.signed("CreatePullThroughCacheRule", {
            "ecrRepositoryPrefix": name, "upstreamRegistryUrl": "http://elsewhere:1"}),
            "PullThroughCacheRuleAlreadyExistsException")


@pytest.mark.usefixtures("unchanged")
def test_secret_errors(ecr: Ecr, existing: str) -> None:
    other_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    rekeyed = f"rekeyed-{uuid.uuid4().hex[:8]}"
    put_credential(ecr, rekeyed, env={"CARGOHOLD_SECRET_KEY": other_key})
    # The same name under this registry's id (the other key derives another registry id).
    sealed_elsewhere = (f"arn:aws:secretsmanager:us-east-1:{ecr.registry_id}:secret:"
                        f"ecr-pullthroughcache/{rekeyed}")
    cases = [(foreign_arn(ecr), "UnableToAccessSecretException"),
             (missing_arn(ecr), "SecretNotFoundException"),
             (sealed_elsewhere, "UnableToDecryptSecretValueException")]
    try:
        for arn, code in cases:
            assert_aws_error(ecr.signed("CreatePullThroughCacheRule", {
                "ecrRepositoryPrefix": prefix(), "upstreamRegistryUrl": UPSTREAM,
                "credentialArn": arn}), code)
            assert_aws_error(ecr.signed("UpdatePullThroughCacheRule", {
                "ecrRepositoryPrefix": existing, "credentialArn": arn}), code)
    finally:
        ecr.cli("admin", "upstream-credentials", "delete", rekeyed)


@pytest.mark.usefixtures("unchanged")
def test_unknown_prefix_and_malformed_requests(ecr: Ecr, existing: str) -> None:
    missing = {"ecrRepositoryPrefix": "no-such-rule"}
    for operation in ("UpdatePullThroughCacheRule", "DeletePullThroughCacheRule",
                      "ValidatePullThroughCacheRule"):
        assert_aws_error(ecr.signed(operation, missing), "PullThroughCacheRuleNotFoundException")
        assert_aws_error(ecr.signed(operation, {"ecrRepositoryPrefix": "Bad Prefix"}),
                         "InvalidParameterException")
        assert_aws_error(ecr.signed(operation, {}), "InvalidParameterException")
    assert_aws_error(ecr.signed("DescribePullThroughCacheRules",
                                {"ecrRepositoryPrefixes": ["no-such-rule"]}),
                     "PullThroughCacheRuleNotFoundException")
    assert_aws_error(ecr.signed("DescribePullThroughCacheRules", {"maxResults": 0}),
                     "InvalidParameterException")
    assert_aws_error(ecr.signed("DescribePullThroughCacheRules", {"nextToken": "garbage!"}),
                     "InvalidParameterException")
    assert_aws_error(ecr.signed("DescribePullThroughCacheRules", {
        "ecrRepositoryPrefixes": [existing], "maxResults": 5}), "ValidationException")
    assert_aws_error(ecr.signed("UpdatePullThroughCacheRule", {
        "ecrRepositoryPrefix": existing, "customRoleArn": "arn:aws:iam::1:role/r"}),
        "ValidationException")


def test_rule_limit(tmp_path_factory: pytest.TempPathFactory) -> None:
    limited = start_ecr(tmp_path_factory, [])
    os.environ["CARGOHOLD_UPSTREAMS__PTC_MAX_RULES"] = "2"
    try:
        small = next(limited)
    finally:
        del os.environ["CARGOHOLD_UPSTREAMS__PTC_MAX_RULES"]
    try:
        for name in ("first", "second"):
            small.client.create_pull_through_cache_rule(ecrRepositoryPrefix=name,
                                                        upstreamRegistryUrl=UPSTREAM)
        before = rules_state(small)
        assert_aws_error(small.signed("CreatePullThroughCacheRule", {
            "ecrRepositoryPrefix": "third", "upstreamRegistryUrl": UPSTREAM}),
            "LimitExceededException")
        assert rules_state(small) == before
    finally:
        limited.close()
