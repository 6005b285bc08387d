"""Helm charts as OCI artifacts, packaged and pushed the way Helm 3 does it.

Format facts (from Helm's ``pkg/registry`` and ``pkg/chart``, reproduced, not copied):

* config ``application/vnd.cncf.helm.config.v1+json``: ``json.Marshal`` of the chart's
  ``Metadata`` struct after loading (fields in struct order, ``omitempty`` on all but a
  dependency's ``name`` and ``repository``, strings sanitised: whitespace -> space,
  non-printables dropped), YAML numbers and booleans in string fields turned into strings;
* one layer ``application/vnd.cncf.helm.chart.content.v1.tar+gzip``: the chart archive, whose
  entries sit under ``<name>/``; a ``.prov`` file beside the archive becomes a second layer
  ``application/vnd.cncf.helm.chart.provenance.v1.prov``;
* manifest: ``{"schemaVersion":2,"config":...,"layers":[...],"annotations":{...}}`` (no
  ``mediaType`` field) with the OCI annotations description, title (name), version, url (home),
  created, source (first source) and authors ("Name (email), ..."), then the chart's own
  annotations (which may override all but title and version);
* ``created`` is the chart archive's modification time in RFC 3339;
* reference ``<registry>/<namespace>/<name>:<version>``, with ``+`` written ``_`` in the tag.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError
from cargohold.client.gojson import go_marshal, sorted_map
from cargohold.client.goyaml import (
    go_bool,
    go_key,
    go_string,
    go_string_list,
    load_yaml,
    plain,
    sanitize,
)

SEMVER_RE = re.compile(
    r"^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
ALIAS_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
IMMUTABLE_ANNOTATIONS = (mt.ANNOTATION_VERSION, mt.ANNOTATION_TITLE)


# ------------------------------------------------------------------------------ metadata

@dataclass
class ChartMetadata:
    """Helm's ``chart.Metadata`` in struct order, ready for ``json.Marshal``."""

    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.fields.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.fields.get("version", ""))

    def config_json(self) -> bytes:
        return go_marshal(self.fields)

    def annotations(self) -> dict[str, str]:
        return dict(self.fields.get("annotations") or {})


def _dependency(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ClientError("Chart.yaml: dependencies must not contain empty or null entries")
    where = f"dependencies[{index}]"
    dep: dict[str, Any] = {"name": sanitize(go_string(raw.get("name"), f"{where}.name"))}
    version = sanitize(go_string(raw.get("version"), f"{where}.version"))
    if version:
        dep["version"] = version
    dep["repository"] = sanitize(go_string(raw.get("repository"), f"{where}.repository"))
    condition = sanitize(go_string(raw.get("condition"), f"{where}.condition"))
    if condition:
        dep["condition"] = condition
    tags = [sanitize(t) for t in go_string_list(raw.get("tags"), f"{where}.tags")]
    if tags:
        dep["tags"] = tags
    if go_bool(raw.get("enabled"), f"{where}.enabled"):
        dep["enabled"] = True
    imports = raw.get("import-values")
    if imports:
        if not isinstance(imports, list):
            raise ClientError(f"Chart.yaml: {where}.import-values must be a list")
        dep["import-values"] = plain(imports)
    alias = go_string(raw.get("alias"), f"{where}.alias")
    if alias:
        if not ALIAS_RE.match(alias):
            raise ClientError(f"dependency {dep['name']!r} has disallowed characters in the "
                              "alias")
        dep["alias"] = alias
    return dep


def chart_metadata(chart_yaml: str | bytes, requirements_yaml: str | bytes | None = None
                   ) -> ChartMetadata:
    """Parse Chart.yaml (and a v1 chart's requirements.yaml) and validate it like Helm."""
    raw = load_yaml(chart_yaml, "Chart.yaml")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ClientError("Chart.yaml must be a mapping")
    raw = {go_key(k): v for k, v in raw.items()}
    if requirements_yaml is not None:
        requirements = load_yaml(requirements_yaml, "requirements.yaml")
        if isinstance(requirements, dict) and "dependencies" in requirements:
            raw["dependencies"] = requirements["dependencies"]

    def text(field: str) -> str:
        return sanitize(go_string(raw.get(field), field))

    fields: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value:  # omitempty
            fields[key] = value

    api_version = go_string(raw.get("apiVersion"), "apiVersion") or "v1"
    put("name", text("name"))
    put("home", text("home"))
    put("sources", [sanitize(s) for s in go_string_list(raw.get("sources"), "sources")])
    put("version", go_string(raw.get("version"), "version"))
    put("description", text("description"))
    put("keywords", [sanitize(s) for s in go_string_list(raw.get("keywords"), "keywords")])
    maintainers_raw = raw.get("maintainers") or []
    if not isinstance(maintainers_raw, list):
        raise ClientError("Chart.yaml: maintainers must be a list")
    maintainers = []
    for entry in maintainers_raw:
        if not isinstance(entry, dict):
            raise ClientError("Chart.yaml: maintainers must not contain empty or null nodes")
        person: dict[str, str] = {}
        for key in ("name", "email", "url"):
            value = sanitize(go_string(entry.get(key), f"maintainers.{key}"))
            if value:
                person[key] = value
        maintainers.append(person)
    put("maintainers", maintainers)
    put("icon", text("icon"))
    put("apiVersion", api_version)
    put("condition", text("condition"))
    put("tags", text("tags"))
    put("appVersion", text("appVersion"))
    put("deprecated", go_bool(raw.get("deprecated"), "deprecated"))
    annotations_raw = raw.get("annotations") or {}
    if not isinstance(annotations_raw, dict):
        raise ClientError("Chart.yaml: annotations must be a mapping of strings")
    put("annotations", sorted_map({go_key(k): go_string(v, f"annotations.{k}")
                                   for k, v in annotations_raw.items()}))
    put("kubeVersion", text("kubeVersion"))
    deps_raw = raw.get("dependencies") or []
    if not isinstance(deps_raw, list):
        raise ClientError("Chart.yaml: dependencies must be a list")
    put("dependencies", [_dependency(d, i) for i, d in enumerate(deps_raw)])
    put("type", text("type"))
    meta = ChartMetadata(fields)
    _validate(meta, fields)
    return meta


def _validate(meta: ChartMetadata, fields: dict[str, Any]) -> None:
    name = meta.name
    if not name:
        raise ClientError("invalid chart: Chart.yaml has no name (chart.metadata.name is "
                          "required)")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise ClientError(f"invalid chart: name {name!r} is not allowed")
    if not meta.version:
        raise ClientError("invalid chart: Chart.yaml has no version (chart.metadata.version "
                          "is required)")
    if not SEMVER_RE.match(meta.version):
        raise ClientError(f"invalid chart: version {meta.version!r} is not a semantic version")
    if fields.get("type", "") not in ("", "application", "library"):
        raise ClientError("invalid chart: type must be application or library")
    seen: set[str] = set()
    for dep in fields.get("dependencies", []):
        key = dep.get("alias") or dep["name"]
        if key in seen:
            raise ClientError(f"invalid chart: more than one dependency with name or alias "
                              f"{key!r}")
        seen.add(key)


def rfc3339(timestamp: float) -> str:
    """Go's ``time.Format(time.RFC3339)`` in the local time zone ("Z" for UTC)."""
    moment = dt.datetime.fromtimestamp(int(timestamp)).astimezone()
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def oci_annotations(meta: ChartMetadata, created: str) -> dict[str, str]:
    """The manifest annotations Helm 3 writes (generateOCIAnnotations)."""
    fields = meta.fields
    out: dict[str, str] = {}

    def add(key: str, value: str) -> None:
        if value.strip():
            out[key] = value

    add(mt.ANNOTATION_DESCRIPTION, fields.get("description", ""))
    add(mt.ANNOTATION_TITLE, meta.name)
    add(mt.ANNOTATION_VERSION, meta.version)
    add(mt.ANNOTATION_URL, fields.get("home", ""))
    add(mt.ANNOTATION_CREATED, created)
    sources = fields.get("sources") or []
    if sources:
        add(mt.ANNOTATION_SOURCE, sources[0])
    maintainers = fields.get("maintainers") or []
    if maintainers:
        parts = []
        for person in maintainers:
            piece = person.get("name", "")
            if person.get("email"):
                piece += f" ({person['email']})"
            parts.append(piece)
        add(mt.ANNOTATION_AUTHORS, ", ".join(parts))
    for key, value in meta.annotations().items():
        if key not in IMMUTABLE_ANNOTATIONS:
            out[key] = value
    return sorted_map(out)


def chart_manifest(config: dict[str, Any], layers: list[dict[str, Any]],
                   annotations: dict[str, str]) -> bytes:
    """The manifest bytes Helm produces (Go struct order; no mediaType field)."""
    manifest: dict[str, Any] = {"schemaVersion": 2, "config": config, "layers": layers}
    if annotations:
        manifest["annotations"] = sorted_map(annotations)
    return go_marshal(manifest)


def go_descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def tag_for_version(version: str) -> str:
    return version.replace("+", "_")


# ------------------------------------------------------------------------------ versions

def semver_key(version: str) -> tuple[Any, ...] | None:
    match = SEMVER_RE.match(version)
    if not match:
        return None
    major, minor, patch, pre, _build = match.groups()
    parts: list[Any] = [int(major), int(minor or 0), int(patch or 0)]
    if pre is None:
        parts.append((1,))
    else:
        ids = []
        for ident in pre.split("."):
            ids.append((0, int(ident), "") if ident.isdigit() else (1, 0, ident))
        parts.append((0, tuple(ids)))
    return tuple(parts)


def highest_version(tags: list[str]) -> str | None:
    """Helm's choice when no version is given: the highest semver tag (``_`` read as ``+``),
    stable versions only unless there are none."""
    candidates = []
    for tag in tags:
        version = tag.replace("_", "+")
        key = semver_key(version)
        if key is not None:
            candidates.append((key, tag))
    if not candidates:
        return None
    stable = [c for c in candidates if c[0][3] == (1,)]
    pool = stable or candidates
    return max(pool, key=lambda c: c[0])[1]
