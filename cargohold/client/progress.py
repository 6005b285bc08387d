"""Progress bars (bytes, speed, ETA) on a terminal; nothing at all when output is piped."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cargohold.client.content import NullTask


def short_digest(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


class BarTask:
    """One progress row."""

    def __init__(self, progress: Progress, task_id: TaskID, total: int) -> None:
        self.progress = progress
        self.task_id = task_id
        self.total = total

    def advance(self, amount: int) -> None:
        self.progress.advance(self.task_id, amount)

    def set_completed(self, completed: int) -> None:
        self.progress.update(self.task_id, completed=completed)

    def finish(self, note: str = "") -> None:
        self.progress.update(self.task_id, completed=self.total, note=note)


class Transfers:
    """A context manager handing out one progress row per blob."""

    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = enabled
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Transfers:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, label: str, total: int) -> BarTask | NullTask:
        if self._progress is None:
            return NullTask()
        task_id = self._progress.add_task(label[:40], total=total, note="")
        return BarTask(self._progress, task_id, total)
