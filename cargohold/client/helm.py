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
import fnmatch
import math
import os
import re
import tarfile
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError
from cargohold.client.gojson import go_marshal, sorted_map

SEMVER_RE = re.compile(
    r"^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
ALIAS_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
IMMUTABLE_ANNOTATIONS = (mt.ANNOTATION_VERSION, mt.ANNOTATION_TITLE)


# ------------------------------------------------------------------------------ YAML like Go

class GoNumber:
    """A YAML number, remembered so a string field can format it the way Go does."""

    def __init__(self, value: int | float) -> None:
        self.value = value


class _ChartLoader(yaml.SafeLoader):
    pass


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> GoNumber:
    return GoNumber(yaml.SafeLoader.construct_yaml_int(loader, node))


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> GoNumber:
    return GoNumber(yaml.SafeLoader.construct_yaml_float(loader, node))


def _construct_raw(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(node.value)


_ChartLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_ChartLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_ChartLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_raw)


def go_format_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``: shortest digits, %e when exp < -4 or >= 6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    exact = Decimal(repr(abs(value))).as_tuple()
    raw_digits = "".join(str(d) for d in exact.digits)
    point = len(raw_digits) + int(exact.exponent)
    digits = raw_digits.rstrip("0") or "0"
    exp = point - 1
    if exp < -4 or exp >= 6:
        tail = digits[1:]
        mantissa = digits[0] + ("." + tail if tail else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * (-point)}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, GoNumber):
        if isinstance(value.value, bool | int):
            return str(int(value.value))
        return go_format_float(float(value.value))
    if isinstance(value, str):
        return value
    raise ClientError(f"Chart.yaml: {field} must be a string, not {type(value).__name__}")


def _go_string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientError(f"Chart.yaml: {field} must be a list")
    return [_go_string(v, field) for v in value]


def _go_bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise ClientError(f"Chart.yaml: {field} must be true or false")


def _plain(value: Any) -> Any:
    """Values of ``[]interface{}`` fields: numbers back to numbers, maps with sorted keys."""
    if isinstance(value, GoNumber):
        return value.value
    if isinstance(value, dict):
        return sorted_map({_key(k): _plain(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _key(key: Any) -> str:
    if isinstance(key, GoNumber):
        return _go_string(key, "key")
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def sanitize(text: str) -> str:
    """Helm's sanitizeString: whitespace becomes ' ', non-printable runes are dropped."""
    out = []
    for char in text:
        if char.isspace() or char in "\u0085\u00a0":
            out.append(" ")
        elif char.isprintable() or unicodedata.category(char) == "Zs":
            out.append(char)
    return "".join(out)


def load_yaml(text: str | bytes, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_ChartLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClientError(f"{where} is not valid YAML{line}") from None


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
    dep: dict[str, Any] = {"name": sanitize(_go_string(raw.get("name"), f"{where}.name"))}
    version = sanitize(_go_string(raw.get("version"), f"{where}.version"))
    if version:
        dep["version"] = version
    dep["repository"] = sanitize(_go_string(raw.get("repository"), f"{where}.repository"))
    condition = sanitize(_go_string(raw.get("condition"), f"{where}.condition"))
    if condition:
        dep["condition"] = condition
    tags = [sanitize(t) for t in _go_string_list(raw.get("tags"), f"{where}.tags")]
    if tags:
        dep["tags"] = tags
    if _go_bool(raw.get("enabled"), f"{where}.enabled"):
        dep["enabled"] = True
    imports = raw.get("import-values")
    if imports:
        if not isinstance(imports, list):
            raise ClientError(f"Chart.yaml: {where}.import-values must be a list")
        dep["import-values"] = _plain(imports)
    alias = _go_string(raw.get("alias"), f"{where}.alias")
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
    raw = {_key(k): v for k, v in raw.items()}
    if requirements_yaml is not None:
        requirements = load_yaml(requirements_yaml, "requirements.yaml")
        if isinstance(requirements, dict) and "dependencies" in requirements:
            raw["dependencies"] = requirements["dependencies"]

    def text(field: str) -> str:
        return sanitize(_go_string(raw.get(field), field))

    fields: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value:  # omitempty
            fields[key] = value

    api_version = _go_string(raw.get("apiVersion"), "apiVersion") or "v1"
    put("name", text("name"))
    put("home", text("home"))
    put("sources", [sanitize(s) for s in _go_string_list(raw.get("sources"), "sources")])
    put("version", _go_string(raw.get("version"), "version"))
    put("description", text("description"))
    put("keywords", [sanitize(s) for s in _go_string_list(raw.get("keywords"), "keywords")])
    maintainers_raw = raw.get("maintainers") or []
    if not isinstance(maintainers_raw, list):
        raise ClientError("Chart.yaml: maintainers must be a list")
    maintainers = []
    for entry in maintainers_raw:
        if not isinstance(entry, dict):
            raise ClientError("Chart.yaml: maintainers must not contain empty or null nodes")
        person: dict[str, str] = {}
        for key in ("name", "email", "url"):
            value = sanitize(_go_string(entry.get(key), f"maintainers.{key}"))
            if value:
                person[key] = value
        maintainers.append(person)
    put("maintainers", maintainers)
    put("icon", text("icon"))
    put("apiVersion", api_version)
    put("condition", text("condition"))
    put("tags", text("tags"))
    put("appVersion", text("appVersion"))
    put("deprecated", _go_bool(raw.get("deprecated"), "deprecated"))
    annotations_raw = raw.get("annotations") or {}
    if not isinstance(annotations_raw, dict):
        raise ClientError("Chart.yaml: annotations must be a mapping of strings")
    put("annotations", sorted_map({_key(k): _go_string(v, f"annotations.{k}")
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


# ------------------------------------------------------------------------------ archives

def read_archive_metadata(archive: Path) -> ChartMetadata:
    """Chart.yaml (and requirements.yaml) from a packaged chart: ``<top>/Chart.yaml``."""
    chart_yaml: bytes | None = None
    requirements: bytes | None = None
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.lstrip("/").split("/")
                if len(parts) != 2:
                    continue
                if parts[1] == "Chart.yaml" and chart_yaml is None:
                    handle = tar.extractfile(member)
                    chart_yaml = handle.read(1 << 20) if handle else None
                elif parts[1] == "requirements.yaml" and requirements is None:
                    handle = tar.extractfile(member)
                    requirements = handle.read(1 << 20) if handle else None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ClientError(f"{archive} is not a chart archive ({exc})") from None
    if chart_yaml is None:
        raise ClientError(f"{archive} is not a chart archive: no <name>/Chart.yaml inside")
    return chart_metadata(chart_yaml, requirements)


class HelmIgnore:
    """``.helmignore`` rules (Helm's pkg/ignore semantics, plus its default rule)."""

    def __init__(self, text: str = "") -> None:
        self.rules: list[tuple[str, bool, bool]] = []  # (pattern, negate, must_dir)
        for line in [*text.splitlines(), "templates/.?*"]:
            self._add(line)

    def _add(self, line: str) -> None:
        rule = line.strip()
        if not rule or rule.startswith("#"):
            return
        if "**" in rule:
            raise ClientError(".helmignore: double-star (**) syntax is not supported")
        negate = rule.startswith("!")
        if negate:
            rule = rule[1:]
        must_dir = rule.endswith("/")
        rule = rule.rstrip("/")
        if rule.startswith("/"):
            rule = rule[1:]
        self.rules.append((rule, negate, must_dir))

    @staticmethod
    def _match(pattern: str, rel: str) -> bool:
        if "/" in pattern:
            return fnmatch.fnmatchcase(rel, pattern)
        return fnmatch.fnmatchcase(os.path.basename(rel), pattern)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        if rel in (".", ""):
            return False
        for pattern, negate, must_dir in self.rules:
            if negate:
                if must_dir and not is_dir:
                    return True
                if not self._match(pattern, rel):
                    return True
                continue
            if must_dir and not is_dir:
                continue
            if self._match(pattern, rel):
                return True
        return False


def package_chart(chart_dir: Path, out_dir: Path) -> tuple[Path, ChartMetadata]:
    """``helm package``: ``<name>-<version>.tgz`` with entries under ``<name>/``."""
    chart_yaml_path = chart_dir / "Chart.yaml"
    try:
        chart_yaml = chart_yaml_path.read_bytes()
    except FileNotFoundError:
        raise ClientError(f"{chart_dir} is not a chart: Chart.yaml not found") from None
    except OSError as exc:
        raise ClientError(f"cannot read {chart_yaml_path}: {exc.strerror or exc}") from None
    requirements_path = chart_dir / "requirements.yaml"
    requirements = requirements_path.read_bytes() if requirements_path.is_file() else None
    meta = chart_metadata(chart_yaml, requirements)
    ignore_path = chart_dir / ".helmignore"
    rules = HelmIgnore(ignore_path.read_text() if ignore_path.is_file() else "")
    files: list[Path] = []
    for current, dirs, names in os.walk(chart_dir):
        base = Path(current)
        kept_dirs = []
        for d in sorted(dirs):
            rel = (base / d).relative_to(chart_dir).as_posix()
            if not rules.ignored(rel, True):
                kept_dirs.append(d)
        dirs[:] = kept_dirs
        for name in sorted(names):
            path = base / name
            rel = path.relative_to(chart_dir).as_posix()
            if rules.ignored(rel, False) or not path.is_file():
                continue
            files.append(path)
    _check_dependencies(chart_dir, meta, files)
    archive = out_dir / f"{meta.name}-{meta.version}.tgz"
    import gzip

    with open(archive, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path in sorted(files, key=lambda p: (p.name != "Chart.yaml",
                                                 p.relative_to(chart_dir).as_posix())):
            rel = path.relative_to(chart_dir).as_posix()
            info = tar.gettarinfo(str(path), arcname=f"{meta.name}/{rel}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644 if not (info.mode & 0o111) else 0o755
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return archive, meta


def _check_dependencies(chart_dir: Path, meta: ChartMetadata, files: list[Path]) -> None:
    deps = meta.fields.get("dependencies") or []
    if not deps:
        return
    charts = chart_dir / "charts"
    present: set[str] = set()
    if charts.is_dir():
        for entry in charts.iterdir():
            if entry.is_dir() and (entry / "Chart.yaml").is_file():
                try:
                    present.add(chart_metadata((entry / "Chart.yaml").read_bytes()).name)
                except ClientError:
                    continue
            elif entry.name.endswith(".tgz"):
                try:
                    present.add(read_archive_metadata(entry).name)
                except ClientError:
                    continue
    missing = [d["name"] for d in deps if d["name"] not in present]
    if missing:
        raise ClientError(f"found in Chart.yaml, but missing in charts/ directory: "
                          f"{', '.join(missing)}")


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
