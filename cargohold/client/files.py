"""Local files: packing folders as tar.gz layers, safe output paths and safe extraction."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import IO

from cargohold.client.errors import ClientError, UnsafePath


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_folder(folder: Path, out_path: Path, prefix: str | None = None,
                leading_slash: bool = False) -> tuple[str, int]:
    """Stream ``folder`` into a reproducible tar.gz at ``out_path``.

    Entries are named ``<prefix>/<relative path>`` (prefix defaults to the folder's name, as
    oras does; ``""`` puts entries at the root). Returns the digest and size of the
    *uncompressed* tar. Memory use does not grow with the folder's size.
    """
    prefix = folder.name if prefix is None else prefix
    root_name = prefix.strip("/")
    with open(out_path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        writer = _HashingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            if root_name:
                tar.add(folder, arcname=root_name, recursive=False, filter=_normalise)
            for current, dirs, files in os.walk(folder):
                dirs.sort()
                base = Path(current)
                for name in sorted(dirs) + sorted(files):
                    path = base / name
                    rel = path.relative_to(folder).as_posix()
                    arcname = f"{root_name}/{rel}" if root_name else rel
                    if leading_slash:
                        arcname = "/" + arcname
                    mode = path.lstat().st_mode
                    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                        continue
                    tar.add(path, arcname=arcname, recursive=False, filter=_normalise)
    return "sha256:" + writer.hasher.hexdigest(), writer.size


def safe_join(outdir: Path, name: str, what: str) -> Path:
    """``outdir/name``, refusing names that would escape ``outdir``."""
    refusal = f"{what}: {name!r} would be written outside {outdir}; refusing (nothing written)"
    if not name or "\x00" in name:
        raise UnsafePath(f"{what}: empty or invalid file name {name!r}; refusing")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(refusal)
    parts = name.replace("\\", "/").split("/")
    if any(part == ".." for part in parts):
        raise UnsafePath(refusal)
    target = outdir.joinpath(*[p for p in parts if p not in ("", ".")])
    if target == outdir:
        raise UnsafePath(f"{what}: {name!r} names the output folder itself; refusing")
    root = os.path.realpath(outdir)
    real = os.path.realpath(target)
    if not (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
        raise UnsafePath(refusal)
    return target


def check_archive(archive: Path, dest: Path, what: str) -> None:
    """Refuse an archive with any member that would land outside ``dest`` (nothing written)."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                try:
                    tarfile.data_filter(member, str(dest))
                except tarfile.FilterError as exc:
                    raise UnsafePath(f"{what}: archive member {member.name!r} is unsafe "
                                     f"({exc}); refusing (nothing written)") from None
                if member.name.strip("/") not in ("", "."):
                    safe_join(dest, member.name.lstrip("/"), what)
    except tarfile.TarError as exc:
        raise ClientError(f"{what}: not a readable tar archive ({exc})") from None


def extract_archive(archive: Path, dest: Path, what: str) -> list[str]:
    """Extract after :func:`check_archive`; returns member names."""
    check_archive(archive, dest, what)
    names: list[str] = []
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ClientError(f"{what}: extraction failed ({exc})") from None
    return names
