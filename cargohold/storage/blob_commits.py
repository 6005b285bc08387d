"""Publishing verified upload files under their content address, durably, several at a time.

For each file: its bytes reach the disk (fsync), then it is renamed to its blob path, then that
directory's entry reaches the disk (fsync of the directory); only then is its caller answered,
so a crash leaves the old state or the new one. Done for a batch, the steps are taken in turns
across its files: every file's writeback starts before the first fsync waits, and a directory
that receives several files is fsynced once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

Outcome = BaseException | None


class Commit(NamedTuple):
    source: str  # the verified upload file
    target: str  # its blob path
    size: int  # the verified size (the file may hold more: a chunk written but not kept)


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_files(commits: list[Commit], blob_root: str,
                 start_writeback: Callable[[int, int, int], None] | None) -> list[Outcome]:
    """Publish each commit; one outcome per commit (None, or the OSError that stopped it).
    A failure stops its own commit only."""
    outcomes: list[Outcome] = [None] * len(commits)
    opened: list[tuple[int, int]] = []
    try:
        for index, commit in enumerate(commits):
            try:
                fd = os.open(commit.source, os.O_WRONLY)
            except OSError as exc:
                outcomes[index] = exc
                continue
            opened.append((index, fd))
            try:
                if os.fstat(fd).st_size != commit.size:
                    os.ftruncate(fd, commit.size)
                if start_writeback is not None:
                    start_writeback(fd, 0, commit.size)
            except OSError as exc:
                outcomes[index] = exc
        for index, fd in opened:
            if outcomes[index] is None:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    outcomes[index] = exc
    finally:
        for _, fd in opened:
            os.close(fd)
    directories: dict[str, list[int]] = {}
    for index, commit in enumerate(commits):
        if outcomes[index] is not None:
            continue
        try:
            if os.path.exists(commit.target):
                # Content-addressed: the same bytes are already in place (a concurrent push).
                os.unlink(commit.source)
                continue
            _rename_into_place(commit, blob_root)
            directories.setdefault(os.path.dirname(commit.target), []).append(index)
        except OSError as exc:
            outcomes[index] = exc
    for directory, members in directories.items():
        try:
            fsync_dir(directory)
        except OSError as exc:
            for index in members:
                outcomes[index] = exc
    return outcomes


def _rename_into_place(commit: Commit, blob_root: str) -> None:
    try:
        os.replace(commit.source, commit.target)
    except FileNotFoundError:  # the first blob of its prefix: no directory yet
        directory = os.path.dirname(commit.target)
        os.makedirs(directory, exist_ok=True)
        for level in (os.path.dirname(directory), blob_root):  # the new entries themselves
            fsync_dir(level)
        os.replace(commit.source, commit.target)
