"""Unit tests of IAM-style policies (cargohold.services.policy) and of the one authorisation
point (cargohold.services.authz.Authorizer) on a real SQLite metadata database.

Evaluation follows IAM: an explicit Deny anywhere wins, then any Allow, else implicit deny.
Identity policies name resources and never apply to anonymous callers; repository policies name
principals and apply to their repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cargohold.services.actions import (
    BATCH_GET_IMAGE,
    CHECK_LAYERS,
    COMPLETE_UPLOAD,
    DELETE_IMAGE,
    DESCRIBE_IMAGES,
    DESCRIBE_REPOSITORIES,
    GET_DOWNLOAD_URL,
    INITIATE_UPLOAD,
    LIST_IMAGES,
    PUT_IMAGE,
    SCOPE_ACTIONS,
    UPLOAD_PART,
    scope_of,
)
from cargohold.services.authz import Authorizer
from cargohold.services.identity import ANONYMOUS, Principal
from cargohold.services.policy import (
    ADMINISTRATOR_POLICY,
    MAX_POLICY_LENGTH,
    Caller,
    Policy,
    PolicyError,
    PolicyKind,
    evaluate,
    parse_policy,
)
from cargohold.storage.database import Database
from cargohold.storage.identity import IdentityStore
from cargohold.storage.metadata import MetadataStore

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"
IDENTITY = PolicyKind.IDENTITY
REPOSITORY = PolicyKind.REPOSITORY

# The issue's definition of the three scope groups.
PULL = [BATCH_GET_IMAGE, GET_DOWNLOAD_URL, CHECK_LAYERS]
PUSH = [PUT_IMAGE, INITIATE_UPLOAD, UPLOAD_PART, COMPLETE_UPLOAD]
DELETE = [DELETE_IMAGE]


def arn(repository: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{repository}"


def user_arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def caller(name: str | None) -> Caller:
    return Caller(None if name is None else user_arn(name), ACCOUNT)


ALICE = caller("alice")
BOB = caller("bob")
NOBODY = caller(None)


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> str:
    body: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        body["Version"] = version
    return json.dumps(body)


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def grant(principal: Any, action: Any, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, **extra}


def identity(*statements: dict[str, Any]) -> tuple[Policy, PolicyKind]:
    return parse_policy(doc(*statements), IDENTITY), IDENTITY


def repository(*statements: dict[str, Any]) -> tuple[Policy, PolicyKind]:
    return parse_policy(doc(*statements), REPOSITORY), REPOSITORY


def allowed(policies: list[tuple[Policy, PolicyKind]], who: Caller, action: str,
            repo: str = "team/app") -> bool:
    return evaluate(policies, who, action, arn(repo))


# --------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------

def test_administrator_policy_parses_and_allows_everything() -> None:
    policy = parse_policy(ADMINISTRATOR_POLICY, IDENTITY)
    assert len(policy.statements) == 1
    for action in [*PULL, *PUSH, *DELETE, LIST_IMAGES, "ecr:CreateRepository",
                   "ecr:SetRepositoryPolicy"]:
        assert evaluate([(policy, IDENTITY)], ALICE, action, arn("any/where"))


def test_single_statement_object_and_string_fields_are_accepted() -> None:
    text = json.dumps({"Version": "2012-10-17", "Id": "x", "Statement": {
        "Sid": "One", "Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}})
    policy = parse_policy(text, IDENTITY)
    assert policy.statements[0].actions == ("ecr:BatchGetImage",)
    assert policy.statements[0].resources == ("*",)
    assert policy.statements[0].principals is None


@pytest.mark.parametrize("version", ["2012-10-17", "2008-10-17", None])
def test_versions_accepted(version: str | None) -> None:
    parse_policy(doc(allow("ecr:*"), version=version), IDENTITY)


def test_repository_policy_without_resource_applies_to_its_repository() -> None:
    policy = parse_policy(doc(grant("*", "ecr:BatchGetImage")), REPOSITORY)
    assert policy.statements[0].resources is None
    assert policy.statements[0].principals == ("*",)


@pytest.mark.parametrize(("principal", "parsed"), [
    ("*", ("*",)),
    ({"AWS": "*"}, ("*",)),
    ({"AWS": ACCOUNT}, (ACCOUNT,)),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, (f"arn:aws:iam::{ACCOUNT}:root",)),
    ({"AWS": [user_arn("alice"), user_arn("bob")]}, (user_arn("alice"), user_arn("bob"))),
])
def test_principal_forms(principal: Any, parsed: tuple[str, ...]) -> None:
    policy = parse_policy(doc(grant(principal, "ecr:*")), REPOSITORY)
    assert policy.statements[0].principals == parsed


def refused(text: str, kind: PolicyKind = IDENTITY) -> str:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, kind)
    assert str(exc.value), "a refusal says why"
    return str(exc.value)


@pytest.mark.parametrize("key", ["Condition", "NotAction", "NotResource"])
def test_identity_statement_keys_that_cannot_be_evaluated_exactly_are_refused(key: str) -> None:
    statement = allow("ecr:*")
    statement[key] = {"StringEquals": {"aws:username": "alice"}} if key == "Condition" else "*"
    assert key in refused(doc(statement))


@pytest.mark.parametrize("key", ["Condition", "NotAction", "NotPrincipal", "NotResource"])
def test_repository_statement_keys_that_cannot_be_evaluated_exactly_are_refused(
        key: str) -> None:
    statement = grant("*", "ecr:BatchGetImage")
    statement[key] = {"Bool": {"aws:SecureTransport": "true"}} if key == "Condition" else "*"
    assert key in refused(doc(statement), REPOSITORY)


def test_not_principal_instead_of_principal_is_refused() -> None:
    statement = {"Effect": "Deny", "NotPrincipal": {"AWS": user_arn("alice")},
                 "Action": "ecr:*"}
    refused(doc(statement), REPOSITORY)


@pytest.mark.parametrize("text", [
    "", "{", "not json", '{"Statement": [}', "{'Statement': []}", '{"Statement": [1,]}',
])
def test_malformed_json_is_refused(text: str) -> None:
    assert "JSON" in refused(text)


@pytest.mark.parametrize("text", ["[]", '"policy"', "42", "null", "true"])
def test_non_object_documents_are_refused(text: str) -> None:
    refused(text)


def test_oversize_policy_is_refused_and_the_limit_itself_accepted() -> None:
    base = doc(allow("ecr:*", Sid=""))
    pad = MAX_POLICY_LENGTH - len(base)
    at_limit = doc(allow("ecr:*", Sid="S" * pad))
    assert len(at_limit) == MAX_POLICY_LENGTH == 10_240
    parse_policy(at_limit, IDENTITY)
    over = doc(allow("ecr:*", Sid="S" * (pad + 1)))
    assert "10240" in refused(over)
    # The limit is in characters and applies before parsing: even invalid JSON says "longer".
    assert "longer" in refused("x" * (MAX_POLICY_LENGTH + 1))


@pytest.mark.parametrize("document", [
    {"Version": "2012-10-17"},
    {"Version": "2012-10-17", "Statement": []},
    {"Version": "2012-10-17", "Statement": "Allow"},
    {"Version": "2012-10-17", "Statement": [42]},
    {"Version": "2024-01-01", "Statement": [allow("ecr:*")]},
    {"Version": "2012-10-17", "Statement": [allow("ecr:*")], "Extra": 1},
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]},
    {"Version": "2012-10-17", "Statement": [allow([])]},
    {"Version": "2012-10-17", "Statement": [allow(42)]},
    {"Version": "2012-10-17", "Statement": [allow(["ecr:*", 7])]},
    {"Version": "2012-10-17", "Statement": [allow("ecr")]},
    {"Version": "2012-10-17", "Statement": [allow("ecr:")]},
    {"Version": "2012-10-17", "Statement": [allow("ecr:Batch Get")]},
    {"Version": "2012-10-17", "Statement": [allow(":BatchGetImage")]},
    {"Version": "2012-10-17", "Statement": [allow("ecr:*", [])]},
    {"Version": "2012-10-17", "Statement": [allow("ecr:*", 5)]},
    {"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "ecr:*",
                                             "Resource": "*"}]},
    {"Version": "2012-10-17", "Statement": [{"Effect": "Permit", "Action": "ecr:*",
                                             "Resource": "*"}]},
    {"Version": "2012-10-17", "Statement": [{"Action": "ecr:*", "Resource": "*"}]},
])
def test_invalid_identity_documents_are_refused(document: dict[str, Any]) -> None:
    refused(json.dumps(document))


def test_identity_policy_with_a_principal_is_refused() -> None:
    assert "Principal" in refused(doc(allow("ecr:*", Principal="*")))


def test_identity_policy_without_resource_is_refused() -> None:
    assert "Resource" in refused(doc({"Effect": "Allow", "Action": "ecr:*"}))


def test_repository_policy_without_principal_is_refused() -> None:
    assert "Principal" in refused(doc(allow("ecr:BatchGetImage")), REPOSITORY)


@pytest.mark.parametrize("principal", [
    "alice", "", {"Service": "ecr.amazonaws.com"}, {"AWS": []}, {"AWS": 5},
    {"AWS": "*", "Service": "x"}, ["*"], None, 7,
])
def test_invalid_principals_are_refused(principal: Any) -> None:
    refused(doc(grant(principal, "ecr:*")), REPOSITORY)


# --------------------------------------------------------------------------------------------
# Evaluation: actions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["*", "ecr:*", "ECR:*", "ecr:Batch*", "ecr:batchgetimage",
                                     "ECR:BATCHGETIMAGE", "ecr:BatchGet?mage", "ecr:*Image",
                                     "ecr:B*t*Image"])
def test_action_patterns_that_match_batch_get_image(pattern: str) -> None:
    assert allowed([identity(allow(pattern))], ALICE, BATCH_GET_IMAGE)


@pytest.mark.parametrize("pattern", ["ecr:Batch", "ecr:BatchGetImages", "ecr:Put*", "s3:*",
                                     "ecr:?atchGet", "ecrx:BatchGetImage", "ecr:GetImage"])
def test_action_patterns_that_do_not_match_batch_get_image(pattern: str) -> None:
    assert not allowed([identity(allow(pattern))], ALICE, BATCH_GET_IMAGE)


def test_batch_wildcard_covers_exactly_the_batch_actions() -> None:
    policies = [identity(allow("ecr:Batch*"))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE)
    assert allowed(policies, ALICE, CHECK_LAYERS)
    assert allowed(policies, ALICE, DELETE_IMAGE)
    for action in [GET_DOWNLOAD_URL, PUT_IMAGE, INITIATE_UPLOAD, LIST_IMAGES]:
        assert not allowed(policies, ALICE, action)


def test_requested_action_is_matched_case_insensitively() -> None:
    policies = [identity(allow("ecr:BatchGetImage"))]
    assert evaluate(policies, ALICE, "ECR:batchgetimage", arn("team/app"))


def test_action_list_allows_each_listed_action_only() -> None:
    policies = [identity(allow(PULL))]
    for action in PULL:
        assert allowed(policies, ALICE, action)
    for action in [*PUSH, *DELETE, LIST_IMAGES]:
        assert not allowed(policies, ALICE, action)


# --------------------------------------------------------------------------------------------
# Evaluation: resources
# --------------------------------------------------------------------------------------------

TEAM_PREFIX = "arn:aws:ecr:*:*:repository/team/*"


@pytest.mark.parametrize(("repo", "expected"), [
    ("team/app", True),
    ("team/sub/app", True),  # IAM's * crosses '/'
    ("team/a", True),
    ("team", False),
    ("teamx/app", False),
    ("other/team/app", False),
])
def test_resource_arn_with_wildcards(repo: str, expected: bool) -> None:
    policies = [identity(allow("ecr:*", TEAM_PREFIX))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, repo) is expected


def test_resource_arn_region_and_account_must_match_when_named() -> None:
    policies = [identity(allow("ecr:*", arn("team/app")))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "team/app")
    assert not evaluate(policies, ALICE, BATCH_GET_IMAGE, arn("team/app", region="eu-west-1"))
    assert not evaluate(policies, ALICE, BATCH_GET_IMAGE,
                        arn("team/app", account=OTHER_ACCOUNT))
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "team/app2")


def test_resource_arns_are_case_sensitive() -> None:
    policies = [identity(allow("ecr:*", "arn:aws:ecr:*:*:repository/Team/*"))]
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "team/app")


def test_resource_question_mark_matches_one_character() -> None:
    policies = [identity(allow("ecr:*", "arn:aws:ecr:*:*:repository/app-?"))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "app-1")
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "app-12")
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "app-")


def test_resource_regex_metacharacters_are_literal() -> None:
    policies = [identity(allow("ecr:*", "arn:aws:ecr:*:*:repository/a.b"))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "a.b")
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "axb")


def test_resource_list_matches_any_entry() -> None:
    policies = [identity(allow("ecr:*", [arn("one"), "arn:aws:ecr:*:*:repository/two/*"]))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "one")
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "two/x")
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "three")


def test_repository_policy_resource_narrows_it() -> None:
    policies = [repository(grant("*", "ecr:*", Resource=arn("team/app")))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "team/app")
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "team/other")


# --------------------------------------------------------------------------------------------
# Evaluation: Deny over Allow, implicit deny
# --------------------------------------------------------------------------------------------

def test_no_policy_is_an_implicit_deny() -> None:
    assert not allowed([], ALICE, BATCH_GET_IMAGE)
    assert not allowed([], NOBODY, BATCH_GET_IMAGE)


def test_unrelated_statements_are_an_implicit_deny() -> None:
    policies = [identity(allow("ecr:PutImage")), repository(grant("*", "ecr:ListImages"))]
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE)


def test_deny_wins_within_one_identity_policy_in_either_order() -> None:
    for statements in ([allow("*"), deny("ecr:*", arn("team/app"))],
                       [deny("ecr:*", arn("team/app")), allow("*")]):
        policies = [identity(*statements)]
        assert not allowed(policies, ALICE, BATCH_GET_IMAGE, "team/app")
        assert allowed(policies, ALICE, BATCH_GET_IMAGE, "team/other")


def test_deny_wins_across_identity_policies() -> None:
    policies = [identity(allow("*")), identity(deny("ecr:PutImage"))]
    assert not allowed(policies, ALICE, PUT_IMAGE)
    assert allowed(policies, ALICE, BATCH_GET_IMAGE)


def test_repository_deny_wins_over_identity_allow() -> None:
    policies = [identity(allow("*")),
                repository(grant({"AWS": user_arn("alice")}, "ecr:*", effect="Deny"))]
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE)
    assert not allowed(list(reversed(policies)), ALICE, BATCH_GET_IMAGE)


def test_identity_deny_wins_over_repository_allow() -> None:
    policies = [repository(grant("*", "ecr:*")), identity(deny("ecr:*"))]
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE)
    assert not allowed(list(reversed(policies)), ALICE, BATCH_GET_IMAGE)
    # The identity Deny is alice's only; bob is still allowed by the repository policy.
    assert allowed([policies[0]], BOB, BATCH_GET_IMAGE)


def test_deny_for_everyone_in_repository_policy_beats_everything() -> None:
    policies = [identity(allow("*")), repository(grant("*", "ecr:*")),
                repository(grant("*", "ecr:BatchDeleteImage", effect="Deny"))]
    assert not allowed(policies, ALICE, DELETE_IMAGE)
    assert allowed(policies, ALICE, BATCH_GET_IMAGE)


def test_deny_for_another_user_does_not_apply() -> None:
    policies = [identity(allow("*")),
                repository(grant({"AWS": user_arn("bob")}, "ecr:*", effect="Deny"))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE)
    assert not allowed(policies, BOB, BATCH_GET_IMAGE)


def test_deny_on_other_action_or_resource_does_not_apply() -> None:
    policies = [identity(allow("*"), deny("ecr:PutImage", arn("team/other")))]
    assert allowed(policies, ALICE, PUT_IMAGE, "team/app")
    assert allowed(policies, ALICE, BATCH_GET_IMAGE, "team/other")
    assert not allowed(policies, ALICE, PUT_IMAGE, "team/other")


# --------------------------------------------------------------------------------------------
# Evaluation: principals and anonymous callers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("principal", "alice", "bob", "anonymous"), [
    ("*", True, True, True),
    ({"AWS": "*"}, True, True, True),
    ({"AWS": ["*"]}, True, True, True),
    # Cargohold is one account: the account principal stands for all its (authenticated) users.
    ({"AWS": ACCOUNT}, True, True, False),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, True, True, False),
    ({"AWS": user_arn("alice")}, True, False, False),
    ({"AWS": [user_arn("bob"), user_arn("carol")]}, False, True, False),
    ({"AWS": OTHER_ACCOUNT}, False, False, False),
    ({"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}, False, False, False),
    ({"AWS": user_arn("alice", OTHER_ACCOUNT)}, False, False, False),
    ({"AWS": f"arn:aws:iam::{ACCOUNT}:user/ALICE"}, False, False, False),
])
def test_repository_policy_principals(principal: Any, alice: bool, bob: bool,
                                      anonymous: bool) -> None:
    policies = [repository(grant(principal, PULL))]
    assert allowed(policies, ALICE, BATCH_GET_IMAGE) is alice
    assert allowed(policies, BOB, BATCH_GET_IMAGE) is bob
    assert allowed(policies, NOBODY, BATCH_GET_IMAGE) is anonymous
    # Whatever the principal, a push action is not granted by a pull statement.
    assert not allowed(policies, ALICE, PUT_IMAGE)


def test_identity_policies_never_apply_to_anonymous_callers() -> None:
    assert not allowed([identity(allow("*"))], NOBODY, BATCH_GET_IMAGE)
    # ... not even their Deny (an anonymous caller has no identity): a public Allow stands.
    policies = [identity(deny("*")), repository(grant("*", PULL))]
    assert allowed(policies, NOBODY, BATCH_GET_IMAGE)
    assert not allowed(policies, ALICE, BATCH_GET_IMAGE)


def test_anonymous_caller_with_public_pull_cannot_push_or_delete() -> None:
    policies = [repository(grant("*", PULL))]
    for action in PULL:
        assert allowed(policies, NOBODY, action)
    for action in [*PUSH, *DELETE, LIST_IMAGES, DESCRIBE_IMAGES]:
        assert not allowed(policies, NOBODY, action)


def test_anonymous_caller_is_denied_by_a_public_deny() -> None:
    policies = [repository(grant("*", "ecr:*"), grant("*", "ecr:BatchGetImage",
                                                          effect="Deny"))]
    assert not allowed(policies, NOBODY, BATCH_GET_IMAGE)
    assert allowed(policies, NOBODY, GET_DOWNLOAD_URL)


def test_repository_grant_to_a_user_needs_no_identity_policy() -> None:
    policies = [repository(grant({"AWS": user_arn("alice")}, PULL + PUSH))]
    assert allowed(policies, ALICE, PUT_IMAGE)
    assert not allowed(policies, ALICE, DELETE_IMAGE)


# --------------------------------------------------------------------------------------------
# Actions and scopes
# --------------------------------------------------------------------------------------------

def test_scope_groups_follow_the_issue() -> None:
    assert set(PULL) <= SCOPE_ACTIONS["pull"]
    assert SCOPE_ACTIONS["push"] == frozenset(PUSH)
    assert SCOPE_ACTIONS["delete"] == frozenset(DELETE)
    for action in PULL:
        assert scope_of(action) == "pull"
    for action in PUSH:
        assert scope_of(action) == "push"
    assert scope_of(DELETE_IMAGE) == "delete"
    assert scope_of("ecr:CreateRepository") == "*"
    assert scope_of("ecr:SetRepositoryPolicy") == "*"


# --------------------------------------------------------------------------------------------
# The Authorizer on a real SQLite database
# --------------------------------------------------------------------------------------------

PULL_ALL = [*PULL, LIST_IMAGES]  # what the token scope "pull" is granted for


@dataclass
class World:
    authz: Authorizer
    store: IdentityStore
    metadata: MetadataStore
    users: dict[str, Principal]

    def user(self, name: str) -> Principal:
        return self.users[name]


REPOS = ["other/x", "public/app", "team/app", "team/secret", "team/sub/deep"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    database = Database(f"sqlite:///{tmp_path / 'metadata.db'}")
    database.migrate()
    store = IdentityStore(database)
    metadata = MetadataStore(database)
    for name in REPOS:
        metadata.link_blob(name, "sha256:" + "1" * 64, 1, create=True)
    users: dict[str, Principal] = {}
    for name in ["admin", "reader", "denier", "nobody", "pusher", "alice"]:
        record = store.create_user(name)
        users[name] = Principal(record.id, name, None, "access-key")
    store.put_user_policy("admin", "AdministratorAccess", ADMINISTRATOR_POLICY)
    store.put_user_policy("reader", "read", doc(allow(PULL_ALL, TEAM_PREFIX)))
    store.put_user_policy("denier", "all", doc(allow("*")))
    store.put_user_policy("denier", "not-secret", doc(deny("ecr:*", arn("team/secret"))))
    store.put_user_policy("pusher", "push", doc(allow([*PULL_ALL, *PUSH], arn("team/app"))))
    authz = Authorizer(store, registry_id=ACCOUNT, region=REGION)
    yield World(authz, store, metadata, users)
    database.dispose()


def test_authorizer_arns(world: World) -> None:
    assert world.authz.repository_arn("team/app") == arn("team/app")
    assert world.authz.caller(world.user("alice")) == Caller(user_arn("alice"), ACCOUNT)
    assert world.authz.caller(ANONYMOUS) == Caller(None, ACCOUNT)


@pytest.mark.parametrize(("user", "action", "repo", "expected"), [
    ("admin", PUT_IMAGE, "team/app", True),
    ("admin", DELETE_IMAGE, "other/x", True),
    ("admin", "ecr:CreateRepository", "new/repo", True),
    ("reader", BATCH_GET_IMAGE, "team/app", True),
    ("reader", LIST_IMAGES, "team/sub/deep", True),
    ("reader", BATCH_GET_IMAGE, "other/x", False),
    ("reader", PUT_IMAGE, "team/app", False),
    ("reader", DELETE_IMAGE, "team/app", False),
    ("denier", PUT_IMAGE, "team/app", True),
    ("denier", BATCH_GET_IMAGE, "team/secret", False),
    ("denier", DELETE_IMAGE, "team/secret", False),
    ("pusher", PUT_IMAGE, "team/app", True),
    ("pusher", PUT_IMAGE, "team/secret", False),
    ("pusher", DELETE_IMAGE, "team/app", False),
    ("nobody", BATCH_GET_IMAGE, "team/app", False),
])
def test_is_allowed_by_identity_policies(world: World, user: str, action: str, repo: str,
                                         expected: bool) -> None:
    assert world.authz.is_allowed(world.user(user), action, repo) is expected


def test_anonymous_is_denied_everything_without_a_public_policy(world: World) -> None:
    for repo in REPOS:
        for action in [*PULL_ALL, *PUSH, *DELETE]:
            assert not world.authz.is_allowed(ANONYMOUS, action, repo)


def test_public_repository_policy(world: World) -> None:
    world.store.set_repository_policy("public/app", doc(grant("*", PULL_ALL)))
    for action in PULL_ALL:
        assert world.authz.is_allowed(ANONYMOUS, action, "public/app")
        assert world.authz.is_allowed(world.user("nobody"), action, "public/app")
    for action in [*PUSH, *DELETE]:
        assert not world.authz.is_allowed(ANONYMOUS, action, "public/app")
        assert not world.authz.is_allowed(world.user("nobody"), action, "public/app")
    assert not world.authz.is_allowed(ANONYMOUS, BATCH_GET_IMAGE, "team/app")


def test_repository_policy_deny_beats_administrator(world: World) -> None:
    world.store.set_repository_policy("team/app", doc(
        grant({"AWS": user_arn("admin", ACCOUNT)}, "ecr:BatchDeleteImage", effect="Deny")))
    assert not world.authz.is_allowed(world.user("admin"), DELETE_IMAGE, "team/app")
    assert world.authz.is_allowed(world.user("admin"), PUT_IMAGE, "team/app")
    assert world.authz.is_allowed(world.user("admin"), DELETE_IMAGE, "team/secret")


def test_repository_policy_grants_a_named_user(world: World) -> None:
    world.store.set_repository_policy("other/x", doc(
        grant({"AWS": user_arn("alice", ACCOUNT)}, [*PULL_ALL, *PUSH])))
    alice = world.user("alice")
    assert world.authz.is_allowed(alice, PUT_IMAGE, "other/x")
    assert not world.authz.is_allowed(alice, DELETE_IMAGE, "other/x")
    assert not world.authz.is_allowed(world.user("nobody"), PUT_IMAGE, "other/x")
    assert world.authz.granted_scopes(alice, "other/x", ["pull", "push", "delete"]) == \
        ["pull", "push"]


def test_removed_policies_take_effect_at_once(world: World) -> None:
    reader = world.user("reader")
    assert world.authz.is_allowed(reader, BATCH_GET_IMAGE, "team/app")
    world.store.delete_user_policy("reader", "read")
    assert not world.authz.is_allowed(reader, BATCH_GET_IMAGE, "team/app")
    world.store.set_repository_policy("team/app", doc(grant("*", PULL_ALL)))
    assert world.authz.is_allowed(ANONYMOUS, BATCH_GET_IMAGE, "team/app")
    world.store.delete_repository_policy("team/app")
    assert not world.authz.is_allowed(ANONYMOUS, BATCH_GET_IMAGE, "team/app")


def test_unreadable_stored_policy_grants_nothing(world: World) -> None:
    world.store.put_user_policy("nobody", "broken", "{not json")
    world.store.put_user_policy("nobody", "conditional", doc(allow("*", Condition={})))
    assert not world.authz.is_allowed(world.user("nobody"), BATCH_GET_IMAGE, "team/app")
    # ... and does not break the user's valid policies.
    world.store.put_user_policy("nobody", "ok", doc(allow(PULL_ALL)))
    assert world.authz.is_allowed(world.user("nobody"), BATCH_GET_IMAGE, "team/app")


@pytest.mark.parametrize(("user", "repo", "requested", "granted"), [
    ("admin", "team/app", ["pull", "push", "delete"], ["delete", "pull", "push"]),
    ("admin", "team/app", ["*"], ["delete", "pull", "push"]),
    ("admin", "team/app", ["pull", "bogus", "push"], ["pull", "push"]),
    ("admin", "team/app", [], []),
    ("reader", "team/app", ["pull", "push"], ["pull"]),
    ("reader", "team/app", ["*"], ["pull"]),
    ("reader", "other/x", ["pull"], []),
    ("denier", "team/app", ["pull", "push", "delete"], ["delete", "pull", "push"]),
    ("denier", "team/secret", ["pull", "push", "delete"], []),
    ("pusher", "team/app", ["pull", "push", "delete"], ["pull", "push"]),
    ("pusher", "team/secret", ["pull", "push"], []),
    ("nobody", "team/app", ["pull"], []),
])
def test_granted_scopes(world: World, user: str, repo: str, requested: list[str],
                        granted: list[str]) -> None:
    assert world.authz.granted_scopes(world.user(user), repo, requested) == granted


def test_granted_scopes_need_every_action_of_the_scope(world: World) -> None:
    world.store.put_user_policy("nobody", "almost-push",
                                doc(allow([*PULL_ALL, PUT_IMAGE, INITIATE_UPLOAD, UPLOAD_PART])))
    assert world.authz.granted_scopes(world.user("nobody"), "team/app", ["pull", "push"]) == \
        ["pull"]


def test_granted_scopes_for_anonymous(world: World) -> None:
    assert world.authz.granted_scopes(ANONYMOUS, "public/app", ["pull", "push"]) == []
    world.store.set_repository_policy("public/app", doc(grant("*", PULL_ALL)))
    assert world.authz.granted_scopes(ANONYMOUS, "public/app", ["pull", "push"]) == ["pull"]
    assert world.authz.granted_scopes(ANONYMOUS, "public/app", ["*"]) == ["pull"]
    assert world.authz.granted_scopes(ANONYMOUS, "team/app", ["pull"]) == []


def test_pull_scope_is_granted_for_the_three_ecr_pull_actions(world: World) -> None:
    """The issue defines pull as BatchGetImage, GetDownloadUrlForLayer and
    BatchCheckLayerAvailability; a repository policy with exactly those (the usual public-ECR
    policy) must make the repository pullable by token clients, not only with Basic auth."""
    world.store.set_repository_policy("public/app", doc(grant("*", PULL)))
    for action in PULL:
        assert world.authz.is_allowed(ANONYMOUS, action, "public/app")
    assert world.authz.granted_scopes(ANONYMOUS, "public/app", ["pull"]) == ["pull"]
    world.store.put_user_policy("nobody", "pull", doc(allow(PULL, arn("team/app"))))
    assert world.authz.granted_scopes(world.user("nobody"), "team/app", ["pull"]) == ["pull"]


def test_token_principal_is_limited_to_its_granted_scopes(world: World) -> None:
    admin = world.user("admin")
    token = Principal(admin.user_id, "admin", None, "token",
                      {"team/app": frozenset({"pull"}), "team/secret": frozenset({"push"})})
    assert world.authz.is_allowed(token, BATCH_GET_IMAGE, "team/app")
    assert world.authz.is_allowed(token, CHECK_LAYERS, "team/app")
    assert not world.authz.is_allowed(token, PUT_IMAGE, "team/app")
    assert not world.authz.is_allowed(token, DELETE_IMAGE, "team/app")
    assert world.authz.is_allowed(token, INITIATE_UPLOAD, "team/secret")
    assert not world.authz.is_allowed(token, BATCH_GET_IMAGE, "team/secret")
    assert not world.authz.is_allowed(token, BATCH_GET_IMAGE, "other/x")
    # Management actions are outside the registry scopes: a token does not carry them.
    assert not world.authz.is_allowed(token, "ecr:SetRepositoryPolicy", "team/app")


def test_open_access_allows_everything(world: World) -> None:
    authz = Authorizer(world.store, registry_id=ACCOUNT, region=REGION, open_access=True)
    assert authz.is_allowed(ANONYMOUS, DELETE_IMAGE, "team/secret")
    assert authz.granted_scopes(ANONYMOUS, "x/y", ["pull", "push"]) == ["pull", "push"]
    assert authz.visible(ANONYMOUS, REPOS) == REPOS


@pytest.mark.parametrize(("user", "expected"), [
    ("admin", REPOS),
    ("reader", ["team/app", "team/secret", "team/sub/deep"]),
    ("denier", ["other/x", "public/app", "team/app", "team/sub/deep"]),
    ("pusher", ["team/app"]),
    ("nobody", []),
])
def test_visible_by_identity_policies(world: World, user: str, expected: list[str]) -> None:
    assert world.authz.visible(world.user(user), REPOS) == expected


def test_visible_through_repository_policies(world: World) -> None:
    world.store.set_repository_policy("public/app", doc(grant("*", PULL_ALL)))
    world.store.set_repository_policy("other/x", doc(
        grant({"AWS": user_arn("nobody", ACCOUNT)}, "ecr:DescribeRepositories")))
    world.store.set_repository_policy("team/app", doc(
        grant({"AWS": user_arn("reader", ACCOUNT)}, "ecr:*", effect="Deny")))
    assert world.authz.visible(world.user("nobody"), REPOS) == ["other/x", "public/app"]
    assert world.authz.visible(ANONYMOUS, REPOS) == ["public/app"]
    assert world.authz.visible(world.user("reader"), REPOS) == \
        ["public/app", "team/secret", "team/sub/deep"]
    assert world.authz.visible(world.user("nobody"), []) == []


def test_visible_with_describe_repositories_only(world: World) -> None:
    world.store.put_user_policy("nobody", "describe",
                                doc(allow(DESCRIBE_REPOSITORIES, TEAM_PREFIX)))
    assert world.authz.visible(world.user("nobody"), REPOS) == \
        ["team/app", "team/secret", "team/sub/deep"]
    assert not world.authz.is_allowed(world.user("nobody"), BATCH_GET_IMAGE, "team/app")
