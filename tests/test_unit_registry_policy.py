"""Unit tests of the registry policy in the one authorisation point: parsing (PolicyKind.
REGISTRY: Principal and Resource required) and evaluation together with identity and
repository policies (explicit Deny anywhere wins, then any Allow), on a real SQLite database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.services.actions import BATCH_GET_IMAGE, GET_DOWNLOAD_URL, PUT_IMAGE, SCOPE_ACTIONS
from cargohold.services.authz import Authorizer
from cargohold.services.identity import ANONYMOUS, Principal
from cargohold.services.policy import (
    ADMINISTRATOR_POLICY,
    Caller,
    PolicyError,
    PolicyKind,
    evaluate,
    parse_policy,
)
from cargohold.storage.database import Database
from cargohold.storage.ecr_settings import EcrSettingsStore
from cargohold.storage.identity import IdentityStore
from cargohold.storage.metadata import MetadataStore

ACCOUNT = "123456789012"
REGION = "us-east-1"
REGISTRY = PolicyKind.REGISTRY
PULL = sorted(SCOPE_ACTIONS["pull"])


def arn(repository: str) -> str:
    return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repository}"


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def stmt(effect: str, principal: Any, action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource}


@pytest.mark.parametrize("text", [
    doc({"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}),  # no Resource
    doc({"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}),  # no Principal
    doc(stmt("Allow", {"Service": "x"}, "ecr:*", "*")),
    doc(stmt("Maybe", "*", "ecr:*", "*")),
    '{"Statement": [',
    "[]",
])
def test_malformed_registry_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text, REGISTRY)


def test_registry_statements_apply_to_their_principals_and_resources() -> None:
    policy = parse_policy(doc(stmt("Allow", {"AWS": user_arn("alice")}, "ecr:BatchGetImage",
                                   arn("team/*"))), REGISTRY)
    alice, bob = Caller(user_arn("alice"), ACCOUNT), Caller(user_arn("bob"), ACCOUNT)
    pairs = [(policy, REGISTRY)]
    assert evaluate(pairs, alice, BATCH_GET_IMAGE, arn("team/app"))
    assert not evaluate(pairs, alice, BATCH_GET_IMAGE, arn("other/app"))
    assert not evaluate(pairs, alice, PUT_IMAGE, arn("team/app"))
    assert not evaluate(pairs, bob, BATCH_GET_IMAGE, arn("team/app"))
    assert not evaluate(pairs, Caller(None, ACCOUNT), BATCH_GET_IMAGE, arn("team/app"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Authorizer, EcrSettingsStore, dict[str, Principal]]]:
    database = Database(f"sqlite:///{tmp_path / 'metadata.db'}")
    database.migrate()
    store = IdentityStore(database)
    metadata = MetadataStore(database)
    for name in ("team/app", "team/secret", "other/app"):
        metadata.link_blob(name, "sha256:" + "1" * 64, 1, create=True)
    users = {}
    for name in ("admin", "alice", "nobody"):
        users[name] = Principal(store.create_user(name).id, name, None, "access-key")
    store.put_user_policy("admin", "AdministratorAccess", ADMINISTRATOR_POLICY)
    store.put_user_policy("alice", "team", doc({"Effect": "Allow", "Action": "ecr:*",
                                                "Resource": arn("team/*")}))
    yield Authorizer(store, registry_id=ACCOUNT, region=REGION), EcrSettingsStore(database), users
    database.dispose()


def test_no_registry_policy_changes_nothing(world: Any) -> None:
    authz, _, users = world
    assert authz.is_allowed(users["alice"], PUT_IMAGE, "team/app")
    assert not authz.is_allowed(users["nobody"], BATCH_GET_IMAGE, "team/app")


def test_a_registry_allow_grants(world: Any) -> None:
    authz, settings, users = world
    settings.put_registry_policy(doc(stmt("Allow", {"AWS": user_arn("nobody")}, PULL,
                                          arn("other/*"))))
    nobody = users["nobody"]
    assert authz.is_allowed(nobody, BATCH_GET_IMAGE, "other/app")
    assert not authz.is_allowed(nobody, PUT_IMAGE, "other/app")
    assert not authz.is_allowed(nobody, BATCH_GET_IMAGE, "team/app")
    assert authz.granted_scopes(nobody, "other/app", ["pull", "push"]) == ["pull"]
    assert authz.allowed_repositories(nobody, ["team/app", "other/app"], PULL) == ["other/app"]
    assert authz.visible(nobody, ["team/app", "other/app"]) == ["other/app"]
    assert not authz.is_allowed(ANONYMOUS, BATCH_GET_IMAGE, "other/app")


def test_a_registry_deny_overrides_identity_and_repository_allows(world: Any) -> None:
    authz, settings, users = world
    authz.store.set_repository_policy("team/secret", doc(
        {"Effect": "Allow", "Principal": "*", "Action": PULL}))
    assert authz.is_allowed(ANONYMOUS, BATCH_GET_IMAGE, "team/secret")
    settings.put_registry_policy(doc(
        stmt("Deny", "*", GET_DOWNLOAD_URL, arn("team/secret")),
        stmt("Deny", {"AWS": user_arn("admin")}, "ecr:PutImage", "*")))
    for who in (users["alice"], users["admin"], ANONYMOUS):
        assert not authz.is_allowed(who, GET_DOWNLOAD_URL, "team/secret")
        assert authz.is_allowed(who, BATCH_GET_IMAGE, "team/secret")
        assert authz.granted_scopes(who, "team/secret", ["pull"]) == []
    assert authz.is_allowed(users["alice"], GET_DOWNLOAD_URL, "team/app")
    assert not authz.is_allowed(users["admin"], PUT_IMAGE, "other/app")
    assert authz.is_allowed(users["alice"], PUT_IMAGE, "team/app")
    # Deleting the policy restores what identity and repository policies say.
    assert settings.delete_registry_policy() is not None
    assert authz.is_allowed(users["admin"], PUT_IMAGE, "other/app")
    assert settings.delete_registry_policy() is None


def test_open_access_ignores_the_registry_policy(world: Any) -> None:
    authz, settings, _ = world
    settings.put_registry_policy(doc(stmt("Deny", "*", "*", "*")))
    open_authz = Authorizer(authz.store, registry_id=ACCOUNT, region=REGION, open_access=True)
    assert open_authz.is_allowed(ANONYMOUS, PUT_IMAGE, "team/app")
    assert not authz.is_allowed(ANONYMOUS, PUT_IMAGE, "team/app")
