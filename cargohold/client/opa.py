"""OPA bundles: a folder of ``.manifest``, Rego and data files packed as ``opa build`` does.

The archive is a gzip'd tar whose entries are the bundle's files at their paths below the
bundle root, written with a leading ``/`` like ``opa build`` (``/.manifest``,
``/policy.rego``, ``/roles/data.json``). The OCI form uses config
``application/vnd.cncf.openpolicyagent.config.v1+json`` and one layer
``application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip`` titled ``bundle.tar.gz``. OPA's own
OCI downloader (``services: type: oci``) looks for a layer typed
``application/vnd.oci.image.layer.v1.tar+gzip`` instead, which ``--oci-layer`` selects.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import yaml

from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError

BUNDLE_TITLE = "bundle.tar.gz"
DATA_FILES = {"data.json", "data.yaml", "data.yml"}
SPECIAL_FILES = {".manifest", ".signatures.json", "plan.json"}
LAYER_TYPES = (mt.OPA_LAYER, mt.OCI_LAYER_GZIP)


def bundle_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, archive name) for every bundle file below ``folder``; validated."""
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder")
    found: list[tuple[Path, str]] = []
    policies = 0
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(current)
        for name in sorted(names):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            top_level_special = name in SPECIAL_FILES and base == folder
            if not (name.endswith(".rego") or name in DATA_FILES or name.endswith(".wasm")
                    or top_level_special):
                continue
            if not path.is_file():
                continue
            if name.endswith(".rego"):
                policies += 1
            if name == "data.json" or name == ".manifest" or name == ".signatures.json":
                _check_json(path, rel)
            elif name in ("data.yaml", "data.yml"):
                try:
                    yaml.safe_load(path.read_text())
                except (yaml.YAMLError, UnicodeDecodeError):
                    raise ClientError(f"bundle file {rel} is not valid YAML") from None
            found.append((path, "/" + rel))
    data_files = [n for _, n in found if n.rsplit("/", 1)[-1] in DATA_FILES]
    if not policies and not data_files:
        raise ClientError(f"{folder} holds no OPA bundle: no .rego, data.json or data.yaml "
                          "files")
    return found


def _check_json(path: Path, rel: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClientError(f"bundle file {rel} is not valid JSON ({exc})") from None


def manifest_config(folder: Path) -> bytes:
    """The config blob: the bundle's ``.manifest`` (revision, roots, ...) as compact JSON."""
    path = folder / ".manifest"
    if not path.is_file():
        return b"{}"
    data = _check_json(path, ".manifest")
    if not isinstance(data, dict):
        raise ClientError("bundle file .manifest must be a JSON object")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def pack_bundle(folder: Path, out_path: Path) -> list[str]:
    """Write the bundle tar.gz; returns the archive names."""
    files = bundle_files(folder)
    with open(out_path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path, name in files:
            info = tar.gettarinfo(str(path), arcname=name)
            info.name = name  # keep the leading '/' exactly as opa build writes it
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return [name for _, name in files]


def inspect_bundle_archive(archive: Path) -> bytes:
    """Validate a prebuilt bundle.tar.gz; returns its ``.manifest`` as config JSON."""
    config = b"{}"
    has_content = False
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name.lstrip("/")
                base = name.rsplit("/", 1)[-1]
                if base.endswith(".rego") or base in DATA_FILES or base.endswith(".wasm"):
                    has_content = True
                if name == ".manifest" and member.isfile():
                    handle = tar.extractfile(member)
                    raw = handle.read(1 << 20) if handle else b"{}"
                    try:
                        parsed = json.loads(raw)
                    except json.JSONDecodeError:
                        raise ClientError(f"{archive}: .manifest is not valid JSON") from None
                    config = json.dumps(parsed, separators=(",", ":"), sort_keys=True).encode()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ClientError(f"{archive} is not a gzip'd tar bundle ({exc})") from None
    if not has_content:
        raise ClientError(f"{archive} holds no OPA bundle: no .rego or data files")
    return config
