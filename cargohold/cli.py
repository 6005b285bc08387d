"""The `cargohold` command line: the server, and administration against its data directory."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cargohold import __version__
from cargohold.config import Settings, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cargohold")
def main() -> None:
    """Cargohold: a self-hostable OCI registry with an ECR-compatible API."""


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    config = click.option("--config", "config_file",
                          type=click.Path(path_type=Path, exists=True, dir_okay=False),
                          default=None,
                          help="A TOML settings file (CARGOHOLD_* variables override it).")
    command = config(command)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the embedded database and blobs live "
                             "[default: ./cargohold-data].")(command)


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 5000].")
@_settings_options
@click.option("--workers", type=int, default=None, help="Worker processes [default: 1].")
@click.option("--anonymous", is_flag=True, default=None,
              help="Open the registry to everyone without credentials (local experiments only).")
def serve(host: str | None, port: int | None, data_dir: Path | None,
          config_file: Path | None, workers: int | None, anonymous: bool | None) -> None:
    """Run the registry (SQLite + local files unless configured otherwise)."""
    from cargohold.server import serve as run

    run(load_settings(config_file, host=host, port=port, data_dir=data_dir, workers=workers,
                      anonymous=anonymous))


# -- administration, straight against the database (the server may be running) ----------------

@contextmanager
def _identity(data_dir: Path | None, config_file: Path | None) -> Iterator[Any]:
    from cargohold.http.app import identity_service
    from cargohold.services.storage import Storage

    settings: Settings = load_settings(config_file, data_dir=data_dir)
    storage = Storage.from_settings(settings)
    try:
        storage.database.migrate()
        yield identity_service(storage)
    finally:
        storage.close()


def _when(microseconds: int) -> str:
    return dt.datetime.fromtimestamp(microseconds / 1e6, dt.UTC).isoformat(timespec="seconds")


def _emit(rows: list[dict[str, Any]], output: str, columns: list[str]) -> None:
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


_output = click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
                       help="Output format.")


@main.group()
def admin() -> None:
    """Manage users, access keys and policies, and read the audit log."""


@admin.group()
def users() -> None:
    """Users."""


@users.command("create")
@click.argument("name")
@click.option("--admin", "administrator", is_flag=True, help="Attach AdministratorAccess.")
@click.option("--password-stdin", is_flag=True, help="Read a registry password from stdin.")
@click.option("--with-key/--no-key", default=True, help="Also create an access key.")
@_settings_options
def users_create(name: str, administrator: bool, password_stdin: bool, with_key: bool,
                 data_dir: Path | None, config_file: Path | None) -> None:
    """Create a user (and an access key, whose secret is shown only now)."""
    from cargohold.storage.identity import UserExists
    from cargohold.wire.names import NAME_PATTERN

    if not NAME_PATTERN.match(name) or len(name) > 64:
        raise click.UsageError("user names use lowercase letters, digits and . _ - (max 64)")
    password = click.get_text_stream("stdin").read().rstrip("\n") if password_stdin else None
    with _identity(data_dir, config_file) as identity:
        try:
            identity.create_user(name, password=password, administrator=administrator)
        except UserExists:
            raise click.ClickException(f"user {name!r} exists already") from None
        click.echo(f"created user {name}")
        if with_key:
            key = identity.create_access_key(name)
            click.echo(f"access key id:     {key.id}\nsecret access key: {key.secret}\n"
                       "(the secret is shown only once)")


@users.command("list")
@_output
@_settings_options
def users_list(output: str, data_dir: Path | None, config_file: Path | None) -> None:
    """List users with their policies."""
    with _identity(data_dir, config_file) as identity:
        rows = [{"name": u.name, "created": _when(u.created_at),
                 "policies": ",".join(identity.store.list_user_policies(u.name))}
                for u in identity.store.list_users()]
    _emit(rows, output, ["name", "created", "policies"])


@users.command("delete")
@click.argument("name")
@_settings_options
def users_delete(name: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Delete a user with its access keys and policies."""
    with _identity(data_dir, config_file) as identity:
        if not identity.store.delete_user(name):
            raise click.ClickException(f"no user {name!r}")
    click.echo(f"deleted user {name}")


@users.command("put-policy")
@click.argument("name")
@click.argument("policy_name")
@click.argument("document", type=click.File("r"))
@_settings_options
def users_put_policy(name: str, policy_name: str, document: Any, data_dir: Path | None,
                     config_file: Path | None) -> None:
    """Attach (or replace) an IAM identity policy, read from a file ('-' for stdin)."""
    from cargohold.services.policy import PolicyError, PolicyKind, parse_policy
    from cargohold.storage.identity import UserNotFound

    text = document.read()
    try:
        parse_policy(text, PolicyKind.IDENTITY)
    except PolicyError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None
    with _identity(data_dir, config_file) as identity:
        try:
            identity.store.put_user_policy(name, policy_name, text)
        except UserNotFound:
            raise click.ClickException(f"no user {name!r}") from None
    click.echo(f"policy {policy_name} attached to {name}")


@users.command("delete-policy")
@click.argument("name")
@click.argument("policy_name")
@_settings_options
def users_delete_policy(name: str, policy_name: str, data_dir: Path | None,
                        config_file: Path | None) -> None:
    """Detach an identity policy from a user."""
    from cargohold.storage.identity import UserNotFound

    with _identity(data_dir, config_file) as identity:
        try:
            found = identity.store.delete_user_policy(name, policy_name)
        except UserNotFound:
            raise click.ClickException(f"no user {name!r}") from None
    if not found:
        raise click.ClickException(f"user {name!r} has no policy {policy_name!r}")
    click.echo(f"policy {policy_name} detached from {name}")


@admin.group()
def keys() -> None:
    """Access keys."""


@keys.command("create")
@click.argument("user")
@_settings_options
def keys_create(user: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Create an access key for a user; the secret is shown only now."""
    from cargohold.storage.identity import UserNotFound

    with _identity(data_dir, config_file) as identity:
        try:
            key = identity.create_access_key(user)
        except UserNotFound:
            raise click.ClickException(f"no user {user!r}") from None
    click.echo(f"access key id:     {key.id}\nsecret access key: {key.secret}\n"
               "(the secret is shown only once)")


@keys.command("list")
@click.argument("user", required=False)
@_output
@_settings_options
def keys_list(user: str | None, output: str, data_dir: Path | None,
              config_file: Path | None) -> None:
    """List access keys (never their secrets)."""
    with _identity(data_dir, config_file) as identity:
        rows = [{"id": k.id, "user": k.user_name, "status": k.status,
                 "created": _when(k.created_at)} for k in identity.store.list_access_keys(user)]
    _emit(rows, output, ["id", "user", "status", "created"])


def _set_key_status(key_id: str, status: str, data_dir: Path | None,
                    config_file: Path | None) -> None:
    with _identity(data_dir, config_file) as identity:
        if not identity.store.set_access_key_status(key_id, status):
            raise click.ClickException(f"no access key {key_id!r}")
    click.echo(f"access key {key_id} is {status}")


@keys.command("deactivate")
@click.argument("key_id")
@_settings_options
def keys_deactivate(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Deactivate an access key (it and its temporary passwords stop working)."""
    _set_key_status(key_id, "Inactive", data_dir, config_file)


@keys.command("activate")
@click.argument("key_id")
@_settings_options
def keys_activate(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Reactivate an access key."""
    _set_key_status(key_id, "Active", data_dir, config_file)


@keys.command("delete")
@click.argument("key_id")
@_settings_options
def keys_delete(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Delete an access key."""
    with _identity(data_dir, config_file) as identity:
        if not identity.store.delete_access_key(key_id):
            raise click.ClickException(f"no access key {key_id!r}")
    click.echo(f"deleted access key {key_id}")


@admin.command("audit")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--user", "principal", default=None, help="Only this user's events.")
@click.option("--repository", default=None, help="Only events on this repository.")
@click.option("--outcome", type=click.Choice(["allowed", "denied", "unauthenticated", "failed"]),
              default=None)
@_output
@_settings_options
def audit(limit: int, principal: str | None, repository: str | None, outcome: str | None,
          output: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Show the newest audit events: who did what, where, when, and how it ended."""
    with _identity(data_dir, config_file) as identity:
        events = identity.store.query_audit(limit=limit, principal=principal,
                                            repository=repository, outcome=outcome)
    rows = [{"at": _when(e.at), "principal": e.principal or "-", "key": e.access_key_id or "-",
             "action": e.action, "repository": e.repository or "-", "outcome": e.outcome,
             "status": e.status, "remote": e.remote or "-", "detail": e.detail or ""}
            for e in events]
    _emit(rows, output, ["at", "principal", "action", "repository", "outcome", "status",
                         "remote", "detail"])


@main.command("login-password")
@click.option("--access-key-id", default=None,
              help="Key to mint for [default: $AWS_ACCESS_KEY_ID, else the admin key].")
@_settings_options
def login_password(access_key_id: str | None, data_dir: Path | None,
                   config_file: Path | None) -> None:
    """Print a 12-hour registry password (log in as user AWS), like ECR's get-login-password."""
    from cargohold.services.bootstrap import CREDENTIALS_FILE
    from cargohold.services.identity import AuthenticationFailed

    settings = load_settings(config_file, data_dir=data_dir)
    key_id = access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    if not key_id:
        credentials = settings.data_dir / CREDENTIALS_FILE
        for line in credentials.read_text().splitlines() if credentials.exists() else []:
            name, _, value = line.partition("=")
            if name.strip() == "aws_access_key_id":
                key_id = value.strip()
    if not key_id:
        raise click.UsageError("no access key: pass --access-key-id or set AWS_ACCESS_KEY_ID")
    with _identity(data_dir, config_file) as identity:
        try:
            password, _ = identity.mint_temporary_password(key_id)
        except AuthenticationFailed as exc:
            raise click.ClickException(f"{key_id}: {exc}") from None
    click.echo(password)


@admin.group("repository-policy")
def repository_policy() -> None:
    """Repository policies (who may do what in one repository)."""


@repository_policy.command("set")
@click.argument("repository")
@click.argument("document", type=click.File("r"))
@_settings_options
def repository_policy_set(repository: str, document: Any, data_dir: Path | None,
                          config_file: Path | None) -> None:
    """Set a repository's IAM policy, read from a file ('-' for stdin)."""
    from cargohold.services.policy import PolicyError, PolicyKind, parse_policy
    from cargohold.storage.metadata import RepositoryNotFound

    text = document.read()
    try:
        parse_policy(text, PolicyKind.REPOSITORY)
    except PolicyError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None
    with _identity(data_dir, config_file) as identity:
        try:
            identity.store.set_repository_policy(repository, text)
        except RepositoryNotFound:
            raise click.ClickException(f"no repository {repository!r}") from None
    click.echo(f"policy set on {repository}")


@repository_policy.command("get")
@click.argument("repository")
@_settings_options
def repository_policy_get(repository: str, data_dir: Path | None,
                          config_file: Path | None) -> None:
    """Print a repository's policy."""
    with _identity(data_dir, config_file) as identity:
        text = identity.store.get_repository_policy(repository)
    if text is None:
        raise click.ClickException(f"repository {repository!r} has no policy")
    click.echo(text)


@repository_policy.command("delete")
@click.argument("repository")
@_settings_options
def repository_policy_delete(repository: str, data_dir: Path | None,
                             config_file: Path | None) -> None:
    """Remove a repository's policy."""
    from cargohold.storage.metadata import RepositoryNotFound

    with _identity(data_dir, config_file) as identity:
        try:
            found = identity.store.delete_repository_policy(repository)
        except RepositoryNotFound:
            raise click.ClickException(f"no repository {repository!r}") from None
    if not found:
        raise click.ClickException(f"repository {repository!r} has no policy")
    click.echo(f"policy removed from {repository}")


# The registry client commands (push, pull, login, chart, bundle, tree, copy, ...).
from cargohold.cli_client import register as register_client_commands  # noqa: E402

register_client_commands(main)

from cargohold.cli_events import events as events_commands  # noqa: E402

main.add_command(events_commands)

from cargohold.cli_upstreams import (  # noqa: E402
    pull_through_rules,
    replication_destinations,
    upstream_credentials,
)

admin.add_command(upstream_credentials)
admin.add_command(pull_through_rules)
admin.add_command(replication_destinations)
