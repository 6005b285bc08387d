"""deploy/helm/cargohold renders with Helm's own library (helm-python-sdk) into a Deployment of
stateless replicas configured for PostgreSQL and S3, and refuses to render without the values
a cluster cannot run without."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clihelpers import missing

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "cargohold"
VALUES = {
    "replicaCount": 3,
    "databaseUrl": "postgresql+psycopg://cargohold:pw@db/cargohold",
    "secretKey": "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1leGFjdGx5ISE=",
    "blobStore": {"bucket": "registry-blobs", "prefix": "prod/", "redirect": True,
                  "endpointUrl": "http://seaweedfs:8333", "credentialsSecret": "s3-keys"},
}


def helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:
        missing("helm-python-sdk", f"pip install helm-python-sdk: {exc}")
        raise
    return helm_python


def render(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    chart = helm().Chart.load(str(CHART))
    try:
        rendered = chart.render(values, name="reg", namespace="registry")
    finally:
        chart.close()
    docs = {}
    for text in rendered.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def test_chart_renders_replicas_on_postgres_and_s3() -> None:
    docs = render(VALUES)
    assert set(docs) == {"Deployment", "Service", "Secret"}
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env["CARGOHOLD_BLOB_STORE__BACKEND"]["value"] == "s3"
    assert env["CARGOHOLD_BLOB_STORE__BUCKET"]["value"] == "registry-blobs"
    assert env["CARGOHOLD_BLOB_STORE__PREFIX"]["value"] == "prod/"
    assert env["CARGOHOLD_BLOB_STORE__REDIRECT"]["value"] == "true"
    assert env["CARGOHOLD_BLOB_STORE__ENDPOINT_URL"]["value"] == "http://seaweedfs:8333"
    assert env["CARGOHOLD_BLOB_STORE__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-keys", "key": "secret-access-key"}
    # The database URL and server key reach the pods only through the Secret.
    secret = docs["Secret"]
    assert secret["metadata"]["name"] == "reg-cargohold"
    assert base64.b64decode(secret["data"]["database-url"]).decode() == VALUES["databaseUrl"]
    assert base64.b64decode(secret["data"]["secret-key"]).decode() == VALUES["secretKey"]
    for name, key in (("CARGOHOLD_DATABASE_URL", "database-url"),
                      ("CARGOHOLD_SECRET_KEY", "secret-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "reg-cargohold", "key": key}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert docs["Service"]["spec"]["selector"] == \
        deployment["spec"]["selector"]["matchLabels"]


def test_chart_with_an_existing_secret_and_the_aws_chain() -> None:
    values = {"existingSecret": "my-cargohold", "blobStore": {"bucket": "b"}}
    docs = render(values)
    assert "Secret" not in docs
    env = {item["name"]: item for item in
           docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CARGOHOLD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "my-cargohold"
    assert "CARGOHOLD_BLOB_STORE__ACCESS_KEY_ID" not in env  # credentials from IRSA/instance role
    assert docs["Deployment"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("drop", ["databaseUrl", "secretKey", "bucket"])
def test_chart_refuses_to_render_without_required_values(drop: str) -> None:
    values = {**VALUES, "blobStore": dict(VALUES["blobStore"])}
    if drop == "bucket":
        del values["blobStore"]["bucket"]
    else:
        del values[drop]
    with pytest.raises(helm().HelmError, match=drop):
        render(values)


def test_chart_passes_helm_lint() -> None:
    result = helm().lint(str(CHART), VALUES, strict=True)
    assert result["errors"] == [], result
    # Only informational notes (severity 1, "icon is recommended"); no warnings or errors.
    assert all(message["severity"] <= 1 for message in result["messages"]), result
