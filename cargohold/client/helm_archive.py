"""Chart archives: read the metadata of a packaged chart, and package a chart folder as
``helm package`` does (``.helmignore``, ``<name>/`` entries, dependency checks)."""

from __future__ import annotations

import fnmatch
import gzip
import os
import tarfile
from pathlib import Path

from cargohold.client.errors import ClientError
from cargohold.client.helm import ChartMetadata, chart_metadata


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


