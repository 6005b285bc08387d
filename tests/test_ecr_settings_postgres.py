"""The ECR registry settings on PostgreSQL (migration 0004's tables): creation templates applied
on push, the registry policy, BLOB_MOUNTING with discovered mounts, and ListImageReferrers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import requests
from dbfixtures import postgres_available, postgres_database
from ecrhelpers import (
    EXTERNAL,
    OCI_EMPTY,
    OCI_MANIFEST,
    TIMEOUT,
    Artifact,
    canonical,
    descriptor,
    ecr_client,
    image,
    policy,
)

pytestmark = [
    pytest.mark.skipif(EXTERNAL, reason="drives private Cargohold servers"),
    pytest.mark.skipif(not os.environ.get("CI") and not postgres_available(),
                       reason="PostgreSQL not reachable"),
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def test_registry_settings_on_postgres(make_registry, postgres_url: str) -> None:
    server = make_registry(["--workers", "2"], env={"CARGOHOLD_DATABASE_URL": postgres_url},
                           anonymous=False)
    auth = server.admin_credentials
    client = ecr_client(server.url, *auth)
    http = requests.Session()
    http.auth = auth

    def push(repo: str, artifact: Artifact, ref: str) -> None:
        for blob in artifact.blobs:
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            resp = http.post(f"{server.url}/v2/{repo}/blobs/uploads/?digest={digest}",
                             data=blob, timeout=TIMEOUT)
            assert resp.status_code == 201, resp.text
        resp = http.put(f"{server.url}/v2/{repo}/manifests/{ref}", data=artifact.manifest,
                        headers={"Content-Type": artifact.media_type}, timeout=TIMEOUT)
        assert resp.status_code == 201, resp.text

    public = policy({"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"})
    client.create_repository_creation_template(
        prefix="pg", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        repositoryPolicy=public, resourceTags=[{"Key": "db", "Value": "postgres"}])
    subject = image()
    push("pg/app", subject, "v1")
    [repo] = client.describe_repositories(repositoryNames=["pg/app"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert client.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "db", "Value": "postgres"}]
    assert client.get_repository_policy(repositoryName="pg/app")["policyText"] == public

    empty = b"{}"
    referrer = Artifact(canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
        "config": descriptor(OCI_EMPTY, empty), "layers": [descriptor(OCI_EMPTY, empty)],
        "subject": descriptor(OCI_MANIFEST, subject.manifest)}), [empty])
    push("pg/app", referrer, referrer.digest)
    listed = client.list_image_referrers(repositoryName="pg/app",
                                         subjectId={"imageDigest": subject.digest})
    assert [r["digest"] for r in listed["referrers"]] == [referrer.digest]

    layer = subject.blobs[1]
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    client.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
    resp = http.post(f"{server.url}/v2/other/app/blobs/uploads/?mount={digest}",
                     timeout=TIMEOUT, allow_redirects=False)
    assert resp.status_code == 202, resp.text
    client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
    resp = http.post(f"{server.url}/v2/other/app/blobs/uploads/?mount={digest}",
                     timeout=TIMEOUT, allow_redirects=False)
    assert resp.status_code == 201, resp.text

    client.put_registry_policy(policyText=policy({
        "Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage",
        "Resource": f"arn:aws:ecr:us-east-1:{repo['registryId']}:repository/pg/*"}))
    resp = http.get(f"{server.url}/v2/pg/app/manifests/v1", timeout=TIMEOUT,
                    headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 403, resp.text
    client.delete_registry_policy()
    resp = http.get(f"{server.url}/v2/pg/app/manifests/v1", timeout=TIMEOUT,
                    headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
