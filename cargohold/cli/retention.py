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


# -- lifecycle policies ------------------------------------------------------------------------
# Straight against the stores, like `admin repository-policy`: an operator on the host manages
# retention without credentials or a running server; the ECR API serves remote clients.

def _lifecycle(storage: Any) -> Any:
    from cargohold.http.app import identity_service
    from cargohold.services.retention.lifecycle import LifecycleService

    return LifecycleService(storage, identity_service(storage).registry_id)


def _ecr_errors(run: Callable[[], Any]) -> Any:
    from cargohold.wire.ecr import EcrError

    try:
        return run()
    except EcrError as exc:
        raise click.ClickException(f"{exc.name}: {exc.message}") from None


def _expiry_table(rows: list[dict[str, Any]], output: str, extra: dict[str, Any]) -> None:
    if output == "json":
        click.echo(json.dumps({**extra, "expiring": rows}, indent=2, sort_keys=True))
        return
    columns = ["repository", "imageDigest", "imageTags", "imagePushedAt", "appliedRulePriority"]
    shown = [{**row, "imageTags": ",".join(row.get("imageTags", [])),
              "imagePushedAt": _when(row["imagePushedAt"])} for row in rows]
    columns = [c for c in columns if any(c in row for row in shown)]
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in shown)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in shown:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    for key, value in extra.items():
        click.echo(f"{key}: {value}")


def _when(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


@click.group("lifecycle")
def lifecycle() -> None:
    """ECR lifecycle policies: manage, preview and apply them."""


@lifecycle.command("run")
@_store_options
@click.option("--repository", default=None, help="Only this repository's policy.")
@click.option("--dry-run", is_flag=True, help="List what would expire; delete nothing.")
def lifecycle_run(data_dir: Path | None, config_file: Path | None, output: str,
                  repository: str | None, dry_run: bool) -> None:
    """Apply the stored policies now (expired images are deleted; `gc` frees their bytes)."""
    with _storage(data_dir, config_file) as storage:
        report = _ecr_errors(lambda: asyncio.run(_lifecycle(storage).run(repository,
                                                                          dry_run=dry_run)))
    summary = {k: v for k, v in report.as_dict().items() if k != "expired"}
    _expiry_table(report.expired, output, summary)
    if not report.ran:
        click.echo("another lifecycle run is in progress; try again later", err=True)
        sys.exit(EXIT_BUSY)


@lifecycle.command("get")
@click.argument("repository")
@_store_options
def lifecycle_get(repository: str, data_dir: Path | None, config_file: Path | None,
                  output: str) -> None:
    """Show a repository's lifecycle policy."""
    with _storage(data_dir, config_file) as storage:
        stored = _ecr_errors(lambda: asyncio.run(_lifecycle(storage).get_policy(repository)))
    if output == "json":
        click.echo(json.dumps({"repositoryName": repository,
                               "lifecyclePolicyText": stored.text,
                               "lastEvaluatedAt": stored.last_evaluated_at}, indent=2))
    else:
        click.echo(json.dumps(json.loads(stored.text), indent=2))


@lifecycle.command("put")
@click.argument("repository")
@click.argument("document", type=click.File("r"))
@_store_options
def lifecycle_put(repository: str, document: Any, data_dir: Path | None,
                  config_file: Path | None, output: str) -> None:
    """Set a repository's lifecycle policy from a JSON file (`-` for stdin)."""
    text = document.read()
    with _storage(data_dir, config_file) as storage:
        _ecr_errors(lambda: asyncio.run(_lifecycle(storage).put_policy(repository, text)))
    if output == "json":
        click.echo(json.dumps({"repositoryName": repository, "lifecyclePolicyText": text}))
    else:
        click.echo(f"lifecycle policy of {repository} set")


@lifecycle.command("delete")
@click.argument("repository")
@_store_options
def lifecycle_delete(repository: str, data_dir: Path | None, config_file: Path | None,
                     output: str) -> None:
    """Remove a repository's lifecycle policy."""
    with _storage(data_dir, config_file) as storage:
        stored = _ecr_errors(lambda: asyncio.run(_lifecycle(storage).delete_policy(repository)))
    if output == "json":
        click.echo(json.dumps({"repositoryName": repository,
                               "lifecyclePolicyText": stored.text}))
    else:
        click.echo(f"lifecycle policy of {repository} deleted")


@lifecycle.command("preview")
@click.argument("repository")
@click.option("--policy", "document", type=click.File("r"), default=None,
              help="Preview this policy file instead of the stored policy.")
@_store_options
def lifecycle_preview(repository: str, document: Any, data_dir: Path | None,
                      config_file: Path | None, output: str) -> None:
    """What the policy would expire now (also kept for GetLifecyclePolicyPreview)."""
    text = document.read() if document is not None else None
    with _storage(data_dir, config_file) as storage:
        service = _lifecycle(storage)

        async def preview() -> Any:
            await service.start_preview(repository, text)
            return await service.get_preview(repository)

        result = _ecr_errors(lambda: asyncio.run(preview()))
    rows = [{"repository": repository, **row} for row in result.results]
    _expiry_table(rows, output, {"status": result.status,
                                 "expiringImageTotalCount": len(rows)})


# -- fsck --------------------------------------------------------------------------------------

@click.command("fsck")
@_store_options
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed without losing data: drop orphans and leftover "
                   "upload scratch, record missing references.")
@click.option("--quick", is_flag=True, help="Check sizes only, not digests.")
def fsck(data_dir: Path | None, config_file: Path | None, output: str, repair: bool,
         quick: bool) -> None:
    """Check the database and the blob store against each other (exit 1 on any problem)."""
    from cargohold.services.retention.fsck import Fsck, FsckBusy

    with _storage(data_dir, config_file) as storage:
        try:
            report = asyncio.run(Fsck(storage).run(repair=repair, quick=quick))
        except FsckBusy as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_BUSY)
    result = report.as_dict()
    if output == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        for problem in report.problems:
            detail = {k: v for k, v in problem.items() if k not in ("kind", "repaired") and v}
            state = " (repaired)" if problem["repaired"] else ""
            click.echo(f"{problem['kind']}{state}: {json.dumps(detail, sort_keys=True)}")
        click.echo(f"{report.blobs_checked} blobs, {report.manifests_checked} manifests checked;"
                   f" {len(report.problems)} problems, {report.unrepaired} unrepaired")
    if report.problems:
        sys.exit(1)
