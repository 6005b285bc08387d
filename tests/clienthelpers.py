"""Helpers for the real-client tests (skopeo, oras) and the restart tests.

Everything here builds genuine OCI content on disk (gzip'd tar layers, image configs with
``rootfs.diff_ids``, image manifests, a two-platform image index) or talks plain HTTP to the
registry under test on 127.0.0.1.  Nothing here talks to any other host.

Missing clients are skipped with a clear reason on a developer machine, but when ``CI`` (or
``CARGOHOLD_REQUIRE_CLIENTS``) is set a missing client is a *failure*, so a broken CI image can
never turn the client tests into silent skips.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import pytest
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

MANIFEST_ACCEPT = ", ".join([
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])

HTTP_TIMEOUT = 30.0
SKOPEO_TIMEOUT = 180.0


# --------------------------------------------------------------------------------------------
# Client availability
# --------------------------------------------------------------------------------------------

def clients_required() -> bool:
    """True when a missing client must fail the run rather than skip (CI)."""
    return bool(os.environ.get("CI") or os.environ.get("CARGOHOLD_REQUIRE_CLIENTS"))


def _missing(what: str, hint: str) -> None:
    message = f"{what} is not available ({hint})"
    if clients_required():
        pytest.fail(f"{message}, but CI/CARGOHOLD_REQUIRE_CLIENTS is set: the client tests "
                    "must run there", pytrace=False)
    pytest.skip(message)


def require_skopeo() -> str:
    """Path of the skopeo binary; skip (locally) or fail (CI) if it is not installed."""
    path = shutil.which("skopeo")
    if path is None:
        _missing("skopeo", "install it with `apt-get install -y skopeo`")
    assert path is not None
    return path


def require_oras() -> Any:
    """The imported ``oras.client`` module; skip (locally) or fail (CI) if it is missing."""
    try:
        import oras.client
    except ImportError as exc:
        _missing("the oras Python SDK", f"`pip install oras`: {exc}")
        raise  # pragma: no cover - _missing always raises
    return oras.client


# --------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------

def run_skopeo(*args: str, timeout: float = SKOPEO_TIMEOUT,
               check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo with a hard timeout; on failure raise with the full command output.

    ``--insecure-policy`` keeps the host's /etc/containers/policy.json out of the picture.
    Output is bytes so ``inspect --raw`` can be compared byte for byte.
    """
    skopeo = require_skopeo()
    cmd = [skopeo, "--insecure-policy", *args]
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"skopeo timed out after {timeout}s: {' '.join(cmd)}\n"
            f"stdout:\n{_text(exc.stdout)}\nstderr:\n{_text(exc.stderr)}") from exc
    if check and result.returncode != 0:
        raise AssertionError(
            f"skopeo failed with exit code {result.returncode}: {' '.join(cmd)}\n"
            f"stdout:\n{_text(result.stdout)}\nstderr:\n{_text(result.stderr)}")
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data


def host_of(url: str) -> str:
    """``http://127.0.0.1:5000`` -> ``127.0.0.1:5000``."""
    return url.split("://", 1)[-1].rstrip("/")


def docker_ref(registry_url: str, repo: str, ref: str) -> str:
    """A skopeo ``docker://`` reference; ``ref`` is a tag or ``sha256:...`` digest."""
    sep = "@" if ":" in ref else ":"
    return f"docker://{host_of(registry_url)}/{repo}{sep}{ref}"


# --------------------------------------------------------------------------------------------
# Digests, tarballs, OCI layouts
# --------------------------------------------------------------------------------------------

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON encoding used for every manifest/config these helpers create."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_tar(files: dict[str, bytes], mtime: int = 1_700_000_000) -> bytes:
    """An uncompressed, reproducible tar archive of ``files`` (parent dirs added)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = mtime
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def make_targz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A real ``.tar.gz`` layer and its ``diff_id`` (digest of the uncompressed tar)."""
    tar = make_tar(files)
    return gzip_bytes(tar), sha256_digest(tar)


@dataclass
class Image:
    """One single-platform image: its manifest plus every blob it references."""

    platform: dict[str, str]
    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        out = {sha256_digest(self.config): self.config}
        out.update({sha256_digest(layer): layer for layer in self.layers})
        return out

    def manifest_descriptor(self) -> dict[str, Any]:
        return descriptor(OCI_MANIFEST, self.manifest, platform=dict(self.platform))


def build_image(architecture: str, os_name: str = "linux", nonce: str = "",
                variant: str | None = None, layer_count: int = 2) -> Image:
    """A small but genuine OCI image: gzip'd tar layers and a config with diff_ids."""
    layers: list[bytes] = []
    diff_ids: list[str] = []
    for i in range(layer_count):
        files = {
            f"etc/cargohold/layer{i}.txt": f"layer {i} for {os_name}/{architecture} {nonce}\n"
                                           .encode(),
            f"usr/share/cargohold/{architecture}/data{i}.bin":
                hashlib.sha256(f"{architecture}{i}{nonce}".encode()).digest() * 64,
        }
        if i == 0:
            files["bin/hello"] = f"#!/bin/sh\necho hello from {architecture}\n".encode()
        gz, diff_id = make_targz(files)
        layers.append(gz)
        diff_ids.append(diff_id)
    platform = {"architecture": architecture, "os": os_name}
    if variant:
        platform["variant"] = variant
    config_obj: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/usr/bin:/bin"],
                   "Labels": {"org.example.nonce": nonce}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                    for i in range(layer_count)],
    }
    if variant:
        config_obj["variant"] = variant
    config = canonical_json(config_obj)
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER_GZIP, gz) for gz in layers],
        "annotations": {"org.opencontainers.image.title": f"cargohold-test-{architecture}"},
    })
    return Image(platform=platform, manifest=manifest, config=config, layers=layers)


@dataclass
class MultiArchImage:
    """An OCI image index over two platform images (linux/amd64 and linux/arm64)."""

    index: bytes
    images: list[Image] = field(default_factory=list)

    @property
    def index_digest(self) -> str:
        return sha256_digest(self.index)

    def image_for(self, architecture: str) -> Image:
        for image in self.images:
            if image.platform["architecture"] == architecture:
                return image
        raise KeyError(architecture)

    @property
    def all_blobs(self) -> dict[str, bytes]:
        """Every content-addressed object: the index, the manifests, configs and layers."""
        out = {self.index_digest: self.index}
        for image in self.images:
            out[image.manifest_digest] = image.manifest
            out.update(image.blobs)
        return out


def build_multiarch(nonce: str) -> MultiArchImage:
    images = [build_image("amd64", nonce=nonce), build_image("arm64", nonce=nonce,
                                                            variant="v8")]
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest_descriptor() for image in images],
        "annotations": {"org.opencontainers.image.description": f"cargohold test {nonce}"},
    })
    return MultiArchImage(index=index, images=images)


def write_oci_layout(path: Path, content: dict[str, bytes], root: bytes, root_media_type: str,
                     ref_name: str) -> None:
    """Write an OCI image layout with ``root`` referenced from index.json as ``ref_name``."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for digest, data in {**content, sha256_digest(root): root}.items():
        assert digest == sha256_digest(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(root_media_type, root,
                                 annotations={REF_NAME_ANNOTATION: ref_name})],
    }
    (path / "index.json").write_bytes(canonical_json(top))


def write_multiarch_layout(path: Path, image: MultiArchImage, ref_name: str) -> None:
    write_oci_layout(path, image.all_blobs, image.index, OCI_INDEX, ref_name)


def read_layout_blob(path: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":", 1)
    return (path / "blobs" / algo / hexpart).read_bytes()


def layout_ref_descriptor(path: Path, ref_name: str) -> dict[str, Any]:
    """The descriptor in ``index.json`` tagged ``ref_name`` (what skopeo's oci:DIR:REF means)."""
    top = json.loads((path / "index.json").read_bytes())
    matches = [d for d in top.get("manifests", [])
               if (d.get("annotations") or {}).get(REF_NAME_ANNOTATION) == ref_name]
    assert len(matches) == 1, f"expected one {ref_name!r} in index.json, got {top}"
    return matches[0]


def layout_blob_digests(path: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (path / "blobs" / "sha256").iterdir()}


# --------------------------------------------------------------------------------------------
# Plain HTTP helpers
# --------------------------------------------------------------------------------------------

def get_manifest(base_url: str, repo: str, ref: str,
                 accept: str = MANIFEST_ACCEPT) -> requests.Response:
    return requests.get(f"{base_url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept},
                        timeout=HTTP_TIMEOUT)


def get_blob(base_url: str, repo: str, digest: str) -> requests.Response:
    return requests.get(f"{base_url}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)


def list_tags(base_url: str, repo: str) -> requests.Response:
    return requests.get(f"{base_url}/v2/{repo}/tags/list", timeout=HTTP_TIMEOUT)


def describe(resp: requests.Response) -> str:
    """Compact evidence string for assertion messages."""
    body = resp.content[:2000].decode(errors="replace")
    return (f"{resp.request.method} {resp.url} -> {resp.status_code}\n"
            f"headers: {dict(resp.headers)}\nbody: {body}")


def absolute_location(base_url: str, resp: requests.Response) -> str:
    location = resp.headers.get("Location")
    assert location, f"no Location header\n{describe(resp)}"
    return urljoin(base_url + "/", location)


def with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def push_blob(base_url: str, repo: str, data: bytes) -> str:
    """Monolithic POST + PUT upload; returns the digest."""
    digest = sha256_digest(data)
    resp = requests.post(f"{base_url}/v2/{repo}/blobs/uploads/", timeout=HTTP_TIMEOUT,
                         headers={"Content-Length": "0"})
    assert resp.status_code == 202, describe(resp)
    put = requests.put(with_query(absolute_location(base_url, resp), digest=digest), data=data,
                       headers={"Content-Type": "application/octet-stream"},
                       timeout=HTTP_TIMEOUT)
    assert put.status_code == 201, describe(put)
    return digest


def push_manifest(base_url: str, repo: str, ref: str, body: bytes,
                  media_type: str = OCI_MANIFEST) -> requests.Response:
    resp = requests.put(f"{base_url}/v2/{repo}/manifests/{ref}", data=body,
                        headers={"Content-Type": media_type}, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 201, describe(resp)
    return resp


def push_image(base_url: str, repo: str, image: Image, *tags: str) -> None:
    for data in image.blobs.values():
        push_blob(base_url, repo, data)
    if not tags:
        push_manifest(base_url, repo, image.manifest_digest, image.manifest)
    for tag in tags:
        push_manifest(base_url, repo, tag, image.manifest)


EXTERNAL_URL = os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")


def assert_tag_list(got: list[str], want: list[str]) -> None:
    """Tags as a client reports them: lexical order from Cargohold (as the spec requires).

    The CNCF reference registry 2.8 returns tags in directory order, so against an external
    registry (``CARGOHOLD_TEST_REGISTRY_URL``) only the set is compared; ordering is covered by
    the spec-level tests.
    """
    if EXTERNAL_URL:
        assert sorted(got) == sorted(want)
    else:
        assert got == sorted(want)
