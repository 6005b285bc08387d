"""The README, followed as a new user would: every command of "A short tour" (skopeo with a
login from the real `aws` CLI, the oras-SDK snippet, awscli's describe-images) and of "The
cargohold client", in order, against a fresh secure-by-default server.

The commands are read from the README itself, so a wrong command there fails this test. Only
the address changes (the server listens on a free port; `other.example` becomes a CNCF
reference registry), and the files the README assumes (an OCI layout, a chart, a policy
folder, ...) are created here first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests

from tests.clienthelpers import build_multiarch, require_skopeo, write_multiarch_layout
from tests.clihelpers import shared_reference, write_files
from tests.conftest import RegistryProcess

pytestmark = pytest.mark.clients

README = Path(__file__).resolve().parent.parent / "README.md"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
MARK = "### README step: "


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def prepare_files(work: Path) -> dict[str, bytes]:
    """What the README's commands expect to find in the current folder."""
    image = build_multiarch("readme-tour")
    write_multiarch_layout(work / "my-image-layout", image, "1.0")
    files: dict[str, bytes] = {
        "mychart-0.1.0.tgz": tar_gz({"mychart/Chart.yaml":
                                     "apiVersion: v2\nname: mychart\nversion: 0.1.0\n"}),
        "chart.json": b'{"name":"mychart","version":"0.1.0","apiVersion":"v2"}',
        "bundle.tar.gz": tar_gz({"authz/allow.rego": "package authz\n\nallow := true\n"}),
        "opa-config.json": b"{}",
        "weights.bin": os.urandom(300_000),
        "config.yaml": b"learning_rate: 0.01\n",
        "sbom.json": b'{"spdxVersion":"SPDX-2.3","name":"model"}',
        "mychart/Chart.yaml": b"apiVersion: v2\nname: mychart\nversion: 0.2.0\n",
        "mychart/templates/cm.yaml": b"apiVersion: v1\nkind: ConfigMap\n",
        "policy/authz.rego": b"package authz\n\ndefault allow := false\n",
    }
    write_files(work, files)
    files["index"] = image.index
    return files


def tour_script(host: str, other: str) -> str:
    """One bash script: the README's blocks in order, each announced by a marker line."""
    text = README.read_text()
    tour = section(text, "A short tour")
    client = section(text, "The cargohold client")
    shell = code_blocks(tour, "sh")
    [python] = code_blocks(tour, "python")
    assert len(shell) == 3, "the tour has a login/skopeo block, a password block, describe-images"
    # Commented alternatives of the first block are commands too.
    alternatives = [line[2:] for line in shell[0].splitlines()
                    if line.startswith("# .venv/bin/cargohold ")]
    assert alternatives, "the tour names the cargohold alternative to awscli"
    [client_block] = code_blocks(client, "sh")
    steps = [("login and skopeo", shell[0]), ("login without awscli", "\n".join(alternatives)),
             ("password file", shell[1]),
             ("oras", f".venv/bin/python - <<'PYTHON'\n{python}PYTHON\n"),
             ("describe-images", shell[2]), ("client", client_block)]
    script = "set -euo pipefail\n"
    for name, body in steps:
        script += f"echo '{MARK}{name}'\n{body}\n"
    return script.replace("127.0.0.1:5000", host).replace("other.example", other)


def outputs(stdout: str) -> dict[str, str]:
    parts = stdout.split(MARK)[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def test_readme_tour(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_skopeo()
    work = tmp_path / "clone"
    work.mkdir()
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "cargohold").exists() or not (venv / "bin" / "aws").exists():
        pytest.skip("the tour needs the cargohold and aws commands next to this Python")
    (work / ".venv").symlink_to(venv)
    files = prepare_files(work)
    other = shared_reference(tmp_path_factory)
    server = RegistryProcess(work / "cargohold-data", anonymous=False)
    server.start()
    try:
        home = work / "home"
        home.mkdir()
        aws_config = work / "aws-config"
        aws_config.write_text("[default]\ncli_follow_urlparam = false\n")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "DOCKER_", "REGISTRY_AUTH"))}
        env.update({"HOME": str(home), "AWS_CONFIG_FILE": str(aws_config),
                    "REGISTRY_AUTH_FILE": str(work / "containers-auth.json"),
                    "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                    "NO_COLOR": "1"})
        proc = subprocess.run(["bash", "-c", tour_script(server.host, other.host)], cwd=work,
                              env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, (f"a README command failed\nstdout:\n{proc.stdout}\n"
                                      f"stderr:\n{proc.stderr}")
        said = outputs(proc.stdout)
        host = server.host

        # skopeo: the index went up and came back under both names.
        index_digest = "sha256:" + hashlib.sha256(files["index"]).hexdigest()
        assert '"1.0"' in said["login and skopeo"]
        copied = json.loads((work / "copy" / "index.json").read_text())
        assert [m["digest"] for m in copied["manifests"]] == [index_digest]
        # oras: both artifacts pushed; the chart pulled back byte for byte.
        assert (work / "out" / "mychart-0.1.0.tgz").read_bytes() == files["mychart-0.1.0.tgz"]
        # awscli finds the Helm chart by its artifact media type.
        charts = json.loads(said["describe-images"])
        assert [c["imageTags"] for c in charts] == [["0.1.0"]]
        assert charts[0]["artifactMediaType"] == HELM_CONFIG
        # The client section: pushed, pulled, charted, bundled, referred, listed, copied.
        assert (work / "out" / "weights.bin").read_bytes() == files["weights.bin"]
        assert (work / "out" / "config.yaml").read_bytes() == files["config.yaml"]
        client = said["client"]
        assert "Login Succeeded" in client
        assert f"Pushed: {host}/charts/mychart:0.2.0" in client
        assert f"Pushed {host}/policies/authz:1" in client
        assert "application/spdx+json" in client  # the tree shows the SBOM referrer
        assert "0.1.0" in client and "0.2.0" in client  # images: both chart versions
        model = requests.get(f"{other.url}/v2/team/model/manifests/v1", timeout=10,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert model.status_code == 200
        source = requests.get(f"{server.url}/v2/team/model/manifests/v1", timeout=10,
                              auth=("AWS", (work / "password.txt").read_text().strip()),
                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert model.headers["Docker-Content-Digest"] == source.headers["Docker-Content-Digest"]
        copied_tags = requests.get(f"{other.url}/v2/team/model/tags/list", timeout=10).json()
        assert any(t.startswith("sha256-") for t in copied_tags["tags"]), \
            "copy --recursive brings the SBOM along (tag schema on the reference registry)"
    finally:
        server.stop()
