"""Opening Helm charts and OPA bundles, bounded against hostile archives.

The layer is streamed from its blob file through gzip and tarfile in stream mode ("r|"), so
memory stays constant whatever the archive holds. Caps: the compressed layer size, the number
of entries, the bytes after decompression (counted on the decompressed stream itself, not on
what the headers claim), and the bytes kept of any one file. Entry names that are absolute or
climb out with `..` are refused; links and devices are never followed.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_LAYER_SIZE = 32 * 1024 * 1024
MAX_ENTRIES = 5000
MAX_UNPACKED = 128 * 1024 * 1024
MAX_FILE = 512 * 1024


class ArchiveRefused(Exception):
    """The archive breaks one of the caps, or is not a (gzipped) tar at all."""


class _Bounded(io.RawIOBase):
    """A reader that refuses to yield more than `limit` bytes in total."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveRefused(f"more than {self.limit // (1024 * 1024)} MiB once unpacked")
        buffer[:len(data)] = data
        return len(data)


@dataclass
class ArchiveView:
    """What the console shows of an archive: selected small files and the list of entries."""

    files: dict[str, bytes] = field(default_factory=dict)
    entries: list[tuple[str, int]] = field(default_factory=list)
    truncated: set[str] = field(default_factory=set)


def safe_name(name: str) -> str | None:
    """The normalised entry name, or None if it would leave the archive."""
    if not name or "\0" in name or name.startswith("/") or "\\" in name:
        return None
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or normal.startswith("/"):
        return None
    return normal


def read_archive(path: str | Path, size: int, wanted: set[str], *, suffix: str = "") -> ArchiveView:
    """Walk a (gzipped) tar: keep the files named in `wanted` (normalised names), and list every
    regular file (those ending in `suffix` when one is given). Blocking; run it in a thread."""
    if size > MAX_LAYER_SIZE:
        raise ArchiveRefused(f"the layer is larger than {MAX_LAYER_SIZE // (1024 * 1024)} MiB")
    view = ArchiveView()
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        source: BinaryIO = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        bounded = io.BufferedReader(_Bounded(source, MAX_UNPACKED))
        try:
            with tarfile.open(fileobj=bounded, mode="r|") as archive:
                for count, member in enumerate(archive, 1):
                    if count > MAX_ENTRIES:
                        raise ArchiveRefused(f"more than {MAX_ENTRIES} entries")
                    name = safe_name(member.name)
                    if name is None:
                        raise ArchiveRefused(f"entry {member.name[:200]!r} leaves the archive")
                    if not member.isreg():
                        continue
                    if not suffix or name.endswith(suffix):
                        view.entries.append((name, member.size))
                    if name in wanted:
                        handle = archive.extractfile(member)
                        if handle is not None:
                            view.files[name] = handle.read(MAX_FILE)
                            if member.size > MAX_FILE:
                                view.truncated.add(name)
        except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ArchiveRefused(f"not a readable tar archive ({type(exc).__name__})") from None
    return view


def chart_root(names: list[str]) -> str | None:
    """A chart archive's top directory: the one holding Chart.yaml."""
    for name in names:
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "Chart.yaml":
            return parts[0]
    return None


def list_chart(path: str | Path, size: int) -> ArchiveView:
    """First pass lists entries; the chart's top files are at <dir>/Chart.yaml etc."""
    listing = read_archive(path, size, set())
    root = chart_root([name for name, _ in listing.entries])
    if root is None:
        raise ArchiveRefused("no Chart.yaml at the top of the chart")
    wanted = {f"{root}/{name}" for name in ("Chart.yaml", "values.yaml", "README.md",
                                             "README", "readme.md", "README.txt")}
    view = read_archive(path, size, wanted)
    view.files = {name.split("/", 1)[1]: data for name, data in view.files.items()}
    view.truncated = {name.split("/", 1)[1] for name in view.truncated}
    return view
