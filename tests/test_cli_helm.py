"""`chart push/pull`: Helm 3's exact format, checked against the format facts and against Helm's
own registry code (helm-python-sdk carries Helm's Go library) pushing and pulling."""

from __future__ import annotations

import hashlib
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import requests

from tests.clihelpers import Cli, missing, write_files

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

CHART_YAML = """\
apiVersion: v2
name: webapp
description: "A web app:\\tsmall & <fast>"
type: application
version: 1.4.0+build.9
appVersion: 1.10
kubeVersion: ">=1.25.0-0"
home: https://example.com/webapp
icon: https://example.com/icon.png
sources:
  - https://git.example.com/webapp
  - https://mirror.example.com/webapp
keywords: [web, demo]
maintainers:
  - name: Jane Doe
    email: jane@example.com
    url: https://jane.example.com
  - name: Bob
deprecated: false
annotations:
  org.opencontainers.image.version: "9.9.9"
  org.opencontainers.image.url: https://override.example.com
  category: Web
dependencies:
  - name: redis
    version: 17.x.x
    repository: https://charts.example.com
    condition: redis.enabled
    alias: cache
    import-values:
      - child: default.data
        parent: myimports
"""

# The config Helm 3 writes for CHART_YAML: json.Marshal(chart.Metadata) — struct field order,
# omitempty, sanitised strings (the tab becomes a space), YAML 1.10 read as a number and
# formatted back as Go does ("1.1"), map keys sorted, '<', '>' and '&' escaped.
EXPECTED_CONFIG = (
    '{"name":"webapp","home":"https://example.com/webapp",'
    '"sources":["https://git.example.com/webapp","https://mirror.example.com/webapp"],'
    '"version":"1.4.0+build.9","description":"A web app: small \\u0026 \\u003cfast\\u003e",'
    '"keywords":["web","demo"],'
    '"maintainers":[{"name":"Jane Doe","email":"jane@example.com",'
    '"url":"https://jane.example.com"},{"name":"Bob"}],'
    '"icon":"https://example.com/icon.png","apiVersion":"v2","appVersion":"1.1",'
    '"annotations":{"category":"Web","org.opencontainers.image.url":'
    '"https://override.example.com","org.opencontainers.image.version":"9.9.9"},'
    '"kubeVersion":"\\u003e=1.25.0-0",'
    '"dependencies":[{"name":"redis","version":"17.x.x","repository":'
    '"https://charts.example.com","condition":"redis.enabled","import-values":'
    '[{"child":"default.data","parent":"myimports"}],"alias":"cache"}],'
    '"type":"application"}'
)


def helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:
        missing("helm-python-sdk", f"pip install helm-python-sdk: {exc}")
        raise
    return helm_python


def make_chart(root: Path, chart_yaml: str = CHART_YAML, with_dependency: bool = True) -> Path:
    chart = root / "webapp"
    write_files(chart, {
        "Chart.yaml": chart_yaml,
        "values.yaml": "replicaCount: 2\n",
        "templates/deployment.yaml": "kind: Deployment\n",
        "templates/.hidden": "ignored by Helm's default rule\n",
        ".helmignore": "*.bak\nsecrets/\n",
        "notes.bak": "ignored\n",
        "secrets/key.txt": "ignored\n",
    })
    if with_dependency:
        write_files(chart / "charts" / "redis", {
            "Chart.yaml": "apiVersion: v2\nname: redis\nversion: 17.3.0\n",
            "values.yaml": "{}\n"})
    return chart


def get(registry: str, path: str, accept: str | None = None) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    resp = requests.get(f"http://{registry}{path}", headers=headers, timeout=30)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
    return resp


def test_chart_format_is_helms(cli: Cli, registry: str, tmp_path: Path) -> None:
    chart = make_chart(tmp_path)
    ns = f"helm/{uuid.uuid4().hex[:8]}"
    pushed = cli.json("chart", "push", str(chart), f"oci://{registry}/{ns}",
                      "--creation-time", "2024-05-01T10:00:00Z")
    assert pushed["reference"] == f"{registry}/{ns}/webapp:1.4.0_build.9"
    assert cli.json("tags", f"{registry}/{ns}/webapp")["tags"] == ["1.4.0_build.9"]
    raw = get(registry, f"/v2/{ns}/webapp/manifests/1.4.0_build.9", OCI_MANIFEST).content
    manifest = json.loads(raw)
    assert list(manifest) == ["schemaVersion", "config", "layers", "annotations"]
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [HELM_CHART]
    assert all(set(d) == {"mediaType", "digest", "size"}
               for d in [manifest["config"], *manifest["layers"]])
    config = get(registry, f"/v2/{ns}/webapp/blobs/{manifest['config']['digest']}").content
    assert config.decode() == EXPECTED_CONFIG
    assert manifest["annotations"] == {
        "category": "Web",
        "org.opencontainers.image.authors": "Jane Doe (jane@example.com), Bob",
        "org.opencontainers.image.created": "2024-05-01T10:00:00Z",
        "org.opencontainers.image.description": "A web app: small & <fast>",
        "org.opencontainers.image.source": "https://git.example.com/webapp",
        "org.opencontainers.image.title": "webapp",
        "org.opencontainers.image.url": "https://override.example.com",
        "org.opencontainers.image.version": "1.4.0+build.9",
    }
    # Go's encoder escapes HTML characters in the manifest too
    assert b"small \\u0026 \\u003cfast\\u003e" in raw
    chart_blob = get(registry, f"/v2/{ns}/webapp/blobs/{manifest['layers'][0]['digest']}")
    archive = tmp_path / "chart.tgz"
    archive.write_bytes(chart_blob.content)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"webapp/Chart.yaml", "webapp/values.yaml", "webapp/templates/deployment.yaml",
            "webapp/charts/redis/Chart.yaml", "webapp/.helmignore"} <= names
    assert not {"webapp/notes.bak", "webapp/secrets/key.txt",
                "webapp/templates/.hidden"} & names


def test_same_bytes_as_helm_push(cli: Cli, registry: str, tmp_path: Path) -> None:
    """Helm packages a chart and pushes it; `chart push` of the same archive produces the
    very same manifest (same digest), config and layer."""
    sdk = helm()
    chart = make_chart(tmp_path)
    archive = Path(sdk.package(str(chart), destination=str(tmp_path)))
    prov = Path(str(archive) + ".prov")
    prov.write_text("-----BEGIN PGP SIGNED MESSAGE-----\nnot really signed\n")
    ours_ns, helms_ns = f"ours/{uuid.uuid4().hex[:8]}", f"helms/{uuid.uuid4().hex[:8]}"
    sdk.push(str(archive), f"oci://{registry}/{helms_ns}", plain_http=True)
    ours = cli.json("chart", "push", str(archive), f"{registry}/{ours_ns}")
    theirs = get(registry, f"/v2/{helms_ns}/webapp/manifests/1.4.0_build.9", OCI_MANIFEST)
    mine = get(registry, f"/v2/{ours_ns}/webapp/manifests/1.4.0_build.9", OCI_MANIFEST)
    assert [layer["mediaType"] for layer in json.loads(mine.content)["layers"]] == [
        HELM_CHART, HELM_PROV]
    theirs_doc = json.loads(theirs.content)
    if [layer["mediaType"] for layer in theirs_doc["layers"]] == [HELM_CHART, HELM_PROV]:
        # Helm 3's order (chart, then provenance): byte for byte the same manifest.
        assert mine.content == theirs.content
        assert ours["digest"] == "sha256:" + hashlib.sha256(theirs.content).hexdigest()
    else:
        # The Helm library in helm-python-sdk (v4) uploads both layers at once and sometimes
        # lists the provenance first; everything else must still be identical.
        theirs_doc["layers"].sort(key=lambda layer: layer["mediaType"])
        assert json.loads(mine.content) == theirs_doc


def test_helm_pulls_what_chart_push_wrote(cli: Cli, registry: str, tmp_path: Path) -> None:
    sdk = helm()
    chart = make_chart(tmp_path, with_dependency=False, chart_yaml=CHART_YAML.split(
        "dependencies:")[0])
    ns = f"pull/{uuid.uuid4().hex[:8]}"
    cli("chart", "push", str(chart), f"{registry}/{ns}")
    dest = tmp_path / "helm-pulled"
    dest.mkdir()
    sdk.pull(f"oci://{registry}/{ns}/webapp", version="1.4.0+build.9", destination=str(dest),
             plain_http=True)
    [archive] = list(dest.iterdir())
    assert archive.name == "webapp-1.4.0+build.9.tgz"
    loaded = sdk.Chart.load(str(archive))
    assert loaded.metadata["name"] == "webapp"
    assert loaded.metadata["version"] == "1.4.0+build.9"
    assert loaded.values == {"replicaCount": 2}
    # ... and cargohold pulls what Helm pushed
    helms = f"helmpushed/{uuid.uuid4().hex[:8]}"
    sdk.push(str(archive), f"oci://{registry}/{helms}", plain_http=True)
    out = tmp_path / "ours"
    got = cli.json("chart", "pull", f"{registry}/{helms}/webapp", "-o", str(out))
    assert got["version"] == "1.4.0+build.9"
    assert (out / archive.name).read_bytes() == archive.read_bytes()


def test_chart_push_errors(cli: Cli, registry: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    write_files(bad, {"Chart.yaml": "apiVersion: v2\nname: bad\nversion: one\n"})
    out = cli("chart", "push", str(bad), f"{registry}/x", expect=1)
    assert "not a semantic version" in out.stderr
    chart = make_chart(tmp_path / "nodep")
    (chart / "charts" / "redis" / "Chart.yaml").unlink()
    out = cli("chart", "push", str(chart), f"{registry}/x", expect=1)
    assert "missing in charts/" in out.stderr
    out = cli("chart", "push", str(tmp_path / "nope"), f"{registry}/x", expect=1)
    assert "does not exist" in out.stderr
    out = cli("chart", "push", str(tmp_path / "nodep" / "webapp"), f"{registry}/x:1", expect=1)
    assert "without a tag" in out.stderr
    write_files(tmp_path, {"plain.txt": "x"})
    cli("push", f"{registry}/notachart:1", str(tmp_path / "plain.txt"))
    out = cli("chart", "pull", f"{registry}/notachart:1", "-o", str(tmp_path / "o"), expect=1)
    assert "not a Helm chart" in out.stderr
    assert not (tmp_path / "o").exists()
