"""`cargohold gc`, `cargohold lifecycle` and `cargohold fsck`: retention, run straight
against the stores (like the other administration commands), safe while servers run."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cargohold.config import load_settings
from cargohold.wire.duration import parse_duration

EXIT_BUSY = 3


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--config", "config_file",
                           type=click.Path(path_type=Path, exists=True, dir_okay=False),
                           default=None, help="A TOML settings file.")(command)
    command = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                           help="The data directory [default: ./cargohold-data].")(command)
    return click.option("--output", type=click.Choice(["table", "json"]), default="table",
                        show_default=True)(command)


@contextmanager
def _storage(data_dir: Path | None, config_file: Path | None) -> Iterator[Any]:
    from cargohold.services.storage import Storage

    storage = Storage.from_settings(load_settings(config_file, data_dir=data_dir))
    try:
        storage.database.migrate()
        yield storage
    finally:
        storage.close()


def _print_report(report: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        click.echo(f"{key.ljust(width)}  {value}")


class DurationType(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command("gc")
@_store_options
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@click.option("--grace", type=DurationType(), default=None,
              help="Keep unreferenced blobs younger than this (0, 30s, 10m, 1h) "
                   "[default: the gc_grace setting, 1h].")
@click.option("--delete-untagged", is_flag=True,
              help="Also delete manifests that no tag, index or subject reaches.")
def gc(data_dir: Path | None, config_file: Path | None, output: str, dry_run: bool,
       grace: float | None, delete_untagged: bool) -> None:
    """Delete what nothing references and reclaim its bytes (safe while servers run)."""
    from cargohold.services.retention.gc import GarbageCollector

    with _storage(data_dir, config_file) as storage:
        grace_seconds = storage.settings.gc_grace if grace is None else grace
        report = asyncio.run(GarbageCollector(storage).run(
            grace_seconds, dry_run=dry_run, delete_untagged=delete_untagged))
    _print_report(report.as_dict(), output)
    if not report.ran:
        click.echo("another garbage collection is running; try again later", err=True)
        sys.exit(EXIT_BUSY)
