"""Blob mounts by automatic content discovery (`?mount=` without `from`) and the registry-wide
BLOB_MOUNTING account setting (PutAccountSetting / GetAccountSetting), against a secure server.

A discovered mount needs the pull actions on a repository that holds the blob (the one
Authorizer decides); otherwise, and whenever BLOB_MOUNTING is DISABLED, a mount is an upload.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
import requests
from botocore.exceptions import ClientError
from ecrhelpers import (
    SKIP_EXTERNAL,
    TIMEOUT,
    Ecr,
    allow,
    describe,
    error_code,
    policy,
    sha256,
    start_ecr,
)

pytestmark = SKIP_EXTERNAL

PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
PUSH = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload"]


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    yield from start_ecr(tmp_path_factory)


def arn(ecr: Ecr, name: str) -> str:
    return f"arn:aws:ecr:us-east-1:{ecr.registry_id}:repository/{name}"


def user(ecr: Ecr, *documents: str) -> tuple[str, str]:
    return ecr.create_user(f"u{uuid.uuid4().hex[:10]}", *documents)


def post_mount(ecr: Ecr, auth: tuple[str, str], repo: str, digest: str,
               source: str | None = None) -> requests.Response:
    query = f"mount={digest}" + (f"&from={source}" if source else "")
    return requests.post(f"{ecr.url}/v2/{repo}/blobs/uploads/?{query}", auth=auth,
                         timeout=TIMEOUT, allow_redirects=False)


def linked(ecr: Ecr, repo: str, digest: str) -> bool:
    resp = ecr.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    assert resp.status_code in (200, 404), describe(resp)
    return resp.status_code == 200


def set_mounting(ecr: Ecr, value: str) -> None:
    answer = ecr.client.put_account_setting(name="BLOB_MOUNTING", value=value)
    assert (answer["name"], answer["value"]) == ("BLOB_MOUNTING", value)


def test_discovered_mount_links_a_blob_the_caller_may_pull(ecr: Ecr) -> None:
    source, target = ecr.new_repo("mnt-src"), ecr.new_repo("mnt-dst")
    data = os.urandom(700)
    digest = ecr.push_blob(source, data)
    auth = user(ecr, policy(allow(PULL, arn(ecr, source)), allow(PUSH, arn(ecr, target))))
    resp = post_mount(ecr, auth, target, digest)
    assert resp.status_code == 201, describe(resp)
    assert resp.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    got = ecr.request("GET", f"/v2/{target}/blobs/{digest}")
    assert got.status_code == 200 and got.content == data, describe(got)


def test_discovered_mount_creates_the_target_on_push(ecr: Ecr) -> None:
    source = ecr.new_repo("mnt-src")
    target = f"mnt-new/{uuid.uuid4().hex[:10]}"
    digest = ecr.push_blob(source, os.urandom(300))
    resp = post_mount(ecr, ecr.server.admin_credentials, target, digest)
    assert resp.status_code == 201, describe(resp)
    assert linked(ecr, target, digest)


def test_no_pull_access_anywhere_means_an_upload(ecr: Ecr) -> None:
    source, target = ecr.new_repo("mnt-src"), ecr.new_repo("mnt-dst")
    digest = ecr.push_blob(source, os.urandom(500))
    # Push on the target, and pull only on a repository that does not hold the blob.
    elsewhere = ecr.new_repo("mnt-other")
    auth = user(ecr, policy(allow(PUSH, arn(ecr, target)), allow(PULL, arn(ecr, elsewhere))))
    resp = post_mount(ecr, auth, target, digest)
    assert resp.status_code == 202, describe(resp)
    assert resp.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
    assert not linked(ecr, target, digest), "mounted a blob the caller may not pull"
    # The session is a real upload session.
    data = os.urandom(64)
    put = requests.put(f"{ecr.url}{resp.headers['Location']}?digest={sha256(data)}", data=data,
                       auth=auth, timeout=TIMEOUT)
    assert put.status_code == 201, describe(put)


def test_one_pull_action_is_not_enough(ecr: Ecr) -> None:
    source, target = ecr.new_repo("mnt-src"), ecr.new_repo("mnt-dst")
    digest = ecr.push_blob(source, os.urandom(400))
    auth = user(ecr, policy(allow(PUSH, arn(ecr, target)),
                            allow("ecr:BatchCheckLayerAvailability", arn(ecr, source))))
    for via in (None, source):
        resp = post_mount(ecr, auth, target, digest, via)
        assert resp.status_code == 202, describe(resp)
    assert not linked(ecr, target, digest)


def test_an_explicit_deny_on_the_holder_wins(ecr: Ecr) -> None:
    source, target = ecr.new_repo("mnt-src"), ecr.new_repo("mnt-dst")
    digest = ecr.push_blob(source, os.urandom(400))
    auth = user(ecr, policy(allow(PULL, "*"), allow(PUSH, arn(ecr, target)),
                            {"Effect": "Deny", "Action": "ecr:GetDownloadUrlForLayer",
                             "Resource": arn(ecr, source)}))
    assert post_mount(ecr, auth, target, digest).status_code == 202
    assert not linked(ecr, target, digest)


def test_blob_mounting_disabled_turns_every_mount_into_an_upload(ecr: Ecr) -> None:
    source, target = ecr.new_repo("mnt-src"), ecr.new_repo("mnt-dst")
    digest = ecr.push_blob(source, os.urandom(900))
    admin = ecr.server.admin_credentials
    assert ecr.client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    set_mounting(ecr, "DISABLED")
    try:
        assert ecr.client.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
        for via in (source, None):
            resp = post_mount(ecr, admin, target, digest, via)
            assert resp.status_code == 202, describe(resp)
            assert resp.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
        assert not linked(ecr, target, digest)
    finally:
        set_mounting(ecr, "ENABLED")
    resp = post_mount(ecr, admin, target, digest, source)
    assert resp.status_code == 201, describe(resp)
    assert linked(ecr, target, digest)


def test_account_setting_bad_input_changes_nothing(ecr: Ecr) -> None:
    set_mounting(ecr, "ENABLED")
    cases = [({"name": "NO_SUCH_SETTING", "value": "ENABLED"}, "ValidationException"),
             ({"name": "BLOB_MOUNTING", "value": "enabled"}, "InvalidParameterException"),
             ({"name": "BLOB_MOUNTING", "value": "MAYBE"}, "InvalidParameterException"),
             ({"name": "REGISTRY_POLICY_SCOPE", "value": "V1"}, "InvalidParameterException"),
             ({"name": "B" * 65, "value": "ENABLED"}, "InvalidParameterException")]
    for params, expected in cases:
        with pytest.raises(ClientError) as caught:
            ecr.client.put_account_setting(**params)
        assert error_code(caught.value) == expected, params
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert ecr.client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    with pytest.raises(ClientError) as caught:
        ecr.client.get_account_setting(name="NO_SUCH_SETTING")
    assert error_code(caught.value) == "ValidationException"
    assert ecr.client.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V2"


def test_account_settings_need_their_own_actions(ecr: Ecr) -> None:
    reader = ecr.client_for(*user(ecr, policy(allow("ecr:GetAccountSetting"))))
    assert reader.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    with pytest.raises(ClientError) as caught:
        reader.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
    assert error_code(caught.value) == "AccessDeniedException"
    assert "ecr:PutAccountSetting" in caught.value.response["Error"]["Message"]
    nobody = ecr.client_for(*user(ecr, policy(allow("ecr:DescribeImages"))))
    with pytest.raises(ClientError) as caught:
        nobody.get_account_setting(name="BLOB_MOUNTING")
    assert error_code(caught.value) == "AccessDeniedException"
    assert ecr.client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"


def test_account_setting_with_the_aws_cli(ecr: Ecr) -> None:
    out = ecr.aws("put-account-setting", "--name", "BLOB_MOUNTING", "--value", "DISABLED",
                  "--output", "json")
    assert json.loads(out.stdout) == {"name": "BLOB_MOUNTING", "value": "DISABLED"}
    try:
        out = ecr.aws("get-account-setting", "--name", "BLOB_MOUNTING", "--output", "json")
        assert json.loads(out.stdout) == {"name": "BLOB_MOUNTING", "value": "DISABLED"}
    finally:
        set_mounting(ecr, "ENABLED")
