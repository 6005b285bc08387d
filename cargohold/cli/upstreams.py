"""`cargohold admin upstream-credentials` and `admin pull-through-rules`: what the ECR API
cannot say. Run straight against the database, like the other admin commands."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cargohold.config import load_settings

if TYPE_CHECKING:
    from cargohold.services.upstream.rules import RuleService


@contextmanager
def _rules(data_dir: Path | None, config_file: Path | None) -> Iterator[RuleService]:
    from cargohold.services.storage import Storage
    from cargohold.services.upstream.rules import RuleService

    storage = Storage.from_settings(load_settings(config_file, data_dir=data_dir))
    try:
        storage.database.migrate()
        yield RuleService(storage, storage.keys.registry_id)
    finally:
        storage.close()


def _settings_options(command: click.decorators.FC) -> click.decorators.FC:
    command = click.option("--config", "config_file",
                           type=click.Path(path_type=Path, exists=True, dir_okay=False),
                           default=None, help="A TOML settings file.")(command)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="The registry's data directory [default: ./cargohold-data].",
                        )(command)


@click.group("upstream-credentials")
def upstream_credentials() -> None:
    """Credentials for upstream registries, named by pull-through cache rules' credentialArn."""


@upstream_credentials.command("put")
@click.argument("name")
@click.option("--username", "-u", required=True, help="User name at the upstream.")
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password (or token) from stdin.")
@_settings_options
def put_credential(name: str, username: str, password_stdin: bool, data_dir: Path | None,
                   config_file: Path | None) -> None:
    """Store (or replace) a credential, encrypted under the server key; print its ARN."""
    password = click.get_text_stream("stdin").read().rstrip("\n")
    if not password:
        raise click.UsageError("the password on stdin is empty")
    with _rules(data_dir, config_file) as rules:
        try:
            click.echo(rules.put_credential(name, username, password))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


@upstream_credentials.command("list")
@_settings_options
def list_credentials(data_dir: Path | None, config_file: Path | None) -> None:
    """Names, user names and ARNs (never the passwords)."""
    with _rules(data_dir, config_file) as rules:
        for name, username, _ in rules.store.list_credentials():
            click.echo(f"{name}\t{username}\t{rules.credential_arn(name)}")


@upstream_credentials.command("delete")
@click.argument("name")
@_settings_options
def delete_credential(name: str, data_dir: Path | None, config_file: Path | None) -> None:
    with _rules(data_dir, config_file) as rules:
        if not rules.store.delete_credential(name):
            raise click.ClickException(f"no upstream credential {name!r}")
    click.echo(f"deleted {name}")


@click.group("pull-through-rules")
def pull_through_rules() -> None:
    """Pull-through cache rule options that ECR's API has no field for."""


@pull_through_rules.command("allow-push")
@click.argument("prefix")
@click.option("--allow/--refuse", default=True,
              help="Accept pushes into the rule's cache repositories (ECR refuses them).")
@_settings_options
def allow_push(prefix: str, allow: bool, data_dir: Path | None,
               config_file: Path | None) -> None:
    """Allow (or refuse again) pushes into the cache repositories of a rule."""
    from cargohold.wire.ecr import EcrError

    with _rules(data_dir, config_file) as rules:
        try:
            asyncio.run(rules.set_allow_push(prefix, allow))
        except EcrError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"pushes into {prefix}/… {'allowed' if allow else 'refused'}")


@click.group("replication-destinations")
def replication_destinations() -> None:
    """Remote registries that replication rules (PutReplicationConfiguration) name."""


@replication_destinations.command("put")
@click.argument("registry_id")
@click.option("--url", required=True, help="The destination registry (any OCI registry).")
@click.option("--username", "-u", default=None, help="User name at the destination.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_settings_options
def put_destination(registry_id: str, url: str, username: str | None, password_stdin: bool,
                    data_dir: Path | None, config_file: Path | None) -> None:
    """Add (or replace) a destination; its password is sealed under the server key."""
    from cargohold.services.upstream.rules import upstream_base_url
    from cargohold.storage.replication import ReplicationStore
    from cargohold.wire.ecr import EcrError

    if not re.fullmatch(r"[0-9]{12}", registry_id):
        raise click.UsageError("REGISTRY_ID is 12 digits, as ECR registry ids are")
    try:
        upstream_base_url(url)
    except EcrError as exc:
        raise click.UsageError(exc.message) from None
    if password_stdin != (username is not None):
        raise click.UsageError("--username and --password-stdin go together")
    password = click.get_text_stream("stdin").read().rstrip("\n") if password_stdin else None
    with _rules(data_dir, config_file) as rules:
        sealed = rules.storage.keys.seal(password) if password is not None else None
        ReplicationStore(rules.storage.database).put_destination(registry_id, url, username,
                                                                 sealed)
    click.echo(f"replication destination {registry_id}: {url}")


@replication_destinations.command("list")
@_settings_options
def list_destinations(data_dir: Path | None, config_file: Path | None) -> None:
    from cargohold.storage.replication import ReplicationStore

    with _rules(data_dir, config_file) as rules:
        for destination in ReplicationStore(rules.storage.database).destinations():
            click.echo(f"{destination.registry_id}\t{destination.url}\t"
                       f"{destination.username or '-'}")
