"""`cargohold registry-policy show|delete`: the registry policy, read or removed on the data
directory itself. The way back when a registry policy's Deny locks every caller out of the ECR
API (explicit Deny wins, for the administrator too)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cargohold.config import load_settings

if TYPE_CHECKING:
    from cargohold.storage.database import Database
    from cargohold.storage.ecr_settings import EcrSettingsStore


def _storage_options(command: click.Command) -> click.Command:
    command = click.option("--config", "config_file", default=None,
                           type=click.Path(path_type=Path, exists=True, dir_okay=False),
                           help="A TOML settings file (CARGOHOLD_* variables override it).",
                           )(command)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the embedded database lives [default: ./cargohold-data]."
                        )(command)


def _store(data_dir: Path | None,
           config_file: Path | None) -> tuple[Database, EcrSettingsStore]:
    from cargohold.storage.database import Database
    from cargohold.storage.ecr_settings import EcrSettingsStore

    database = Database(load_settings(config_file, data_dir=data_dir).resolved_database_url)
    database.migrate()
    return database, EcrSettingsStore(database)


@click.group("registry-policy")
def registry_policy() -> None:
    """The registry policy (a resource policy for the whole registry)."""


@registry_policy.command("show")
@_storage_options
def show(data_dir: Path | None, config_file: Path | None) -> None:
    """Print the registry policy."""
    database, store = _store(data_dir, config_file)
    try:
        text = store.registry_policy()
    finally:
        database.dispose()
    if text is None:
        raise click.ClickException("the registry has no registry policy")
    click.echo(text)


@registry_policy.command("delete")
@_storage_options
def delete(data_dir: Path | None, config_file: Path | None) -> None:
    """Remove the registry policy."""
    database, store = _store(data_dir, config_file)
    try:
        text = store.delete_registry_policy()
    finally:
        database.dispose()
    if text is None:
        raise click.ClickException("the registry has no registry policy")
    click.echo("registry policy removed")
