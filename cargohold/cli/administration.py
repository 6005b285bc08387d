"""``cargohold admin``: users, access keys, identity and repository policies, the audit log.

These commands work straight on the registry's database (the server may be running), so they
take the server's ``--data-dir``/``--config``, not a registry address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cargohold.cli.common import emit_table, identity_service, settings_options, table_output, when


@click.group()
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
@settings_options
def users_create(name: str, administrator: bool, password_stdin: bool, with_key: bool,
                 data_dir: Path | None, config_file: Path | None) -> None:
    """Create a user (and an access key, whose secret is shown only now)."""
    from cargohold.storage.identity import UserExists
    from cargohold.wire.names import NAME_PATTERN

    if not NAME_PATTERN.match(name) or len(name) > 64:
        raise click.UsageError("user names use lowercase letters, digits and . _ - (max 64)")
    password = click.get_text_stream("stdin").read().rstrip("\n") if password_stdin else None
    with identity_service(data_dir, config_file) as identity:
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
@table_output
@settings_options
def users_list(output: str, data_dir: Path | None, config_file: Path | None) -> None:
    """List users with their policies."""
    with identity_service(data_dir, config_file) as identity:
        rows = [{"name": u.name, "created": when(u.created_at),
                 "policies": ",".join(identity.store.list_user_policies(u.name))}
                for u in identity.store.list_users()]
    emit_table(rows, output, ["name", "created", "policies"])


@users.command("delete")
@click.argument("name")
@settings_options
def users_delete(name: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Delete a user with its access keys and policies."""
    with identity_service(data_dir, config_file) as identity:
        if not identity.store.delete_user(name):
            raise click.ClickException(f"no user {name!r}")
    click.echo(f"deleted user {name}")


@users.command("put-policy")
@click.argument("name")
@click.argument("policy_name")
@click.argument("document", type=click.File("r"))
@settings_options
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
    with identity_service(data_dir, config_file) as identity:
        try:
            identity.store.put_user_policy(name, policy_name, text)
        except UserNotFound:
            raise click.ClickException(f"no user {name!r}") from None
    click.echo(f"policy {policy_name} attached to {name}")


@users.command("delete-policy")
@click.argument("name")
@click.argument("policy_name")
@settings_options
def users_delete_policy(name: str, policy_name: str, data_dir: Path | None,
                        config_file: Path | None) -> None:
    """Detach an identity policy from a user."""
    from cargohold.storage.identity import UserNotFound

    with identity_service(data_dir, config_file) as identity:
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
@settings_options
def keys_create(user: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Create an access key for a user; the secret is shown only now."""
    from cargohold.storage.identity import UserNotFound

    with identity_service(data_dir, config_file) as identity:
        try:
            key = identity.create_access_key(user)
        except UserNotFound:
            raise click.ClickException(f"no user {user!r}") from None
    click.echo(f"access key id:     {key.id}\nsecret access key: {key.secret}\n"
               "(the secret is shown only once)")


@keys.command("list")
@click.argument("user", required=False)
@table_output
@settings_options
def keys_list(user: str | None, output: str, data_dir: Path | None,
              config_file: Path | None) -> None:
    """List access keys (never their secrets)."""
    with identity_service(data_dir, config_file) as identity:
        rows = [{"id": k.id, "user": k.user_name, "status": k.status,
                 "created": when(k.created_at)} for k in identity.store.list_access_keys(user)]
    emit_table(rows, output, ["id", "user", "status", "created"])


def _set_key_status(key_id: str, status: str, data_dir: Path | None,
                    config_file: Path | None) -> None:
    with identity_service(data_dir, config_file) as identity:
        if not identity.store.set_access_key_status(key_id, status):
            raise click.ClickException(f"no access key {key_id!r}")
    click.echo(f"access key {key_id} is {status}")


@keys.command("deactivate")
@click.argument("key_id")
@settings_options
def keys_deactivate(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Deactivate an access key (it and its temporary passwords stop working)."""
    _set_key_status(key_id, "Inactive", data_dir, config_file)


@keys.command("activate")
@click.argument("key_id")
@settings_options
def keys_activate(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Reactivate an access key."""
    _set_key_status(key_id, "Active", data_dir, config_file)


@keys.command("delete")
@click.argument("key_id")
@settings_options
def keys_delete(key_id: str, data_dir: Path | None, config_file: Path | None) -> None:
    """Delete an access key."""
    with identity_service(data_dir, config_file) as identity:
        if not identity.store.delete_access_key(key_id):
            raise click.ClickException(f"no access key {key_id!r}")
    click.echo(f"deleted access key {key_id}")


@admin.command("audit")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--user", "principal", default=None, help="Only this user's events.")
@click.option("--repository", default=None, help="Only events on this repository.")
@click.option("--outcome", type=click.Choice(["allowed", "denied", "unauthenticated", "failed"]),
              default=None)
@click.option("--request-id", default=None,
              help="Only events of this request (the X-Request-ID of the access log).")
@table_output
@settings_options
def audit(limit: int, principal: str | None, repository: str | None, outcome: str | None,
          request_id: str | None, output: str, data_dir: Path | None,
          config_file: Path | None) -> None:
    """Show the newest audit events: who did what, where, when, and how it ended."""
    with identity_service(data_dir, config_file) as identity:
        events = identity.store.query_audit(limit=limit, principal=principal,
                                            repository=repository, outcome=outcome,
                                            request_id=request_id)
    rows = [{"at": when(e.at), "principal": e.principal or "-", "key": e.access_key_id or "-",
             "action": e.action, "repository": e.repository or "-", "outcome": e.outcome,
             "status": e.status, "remote": e.remote or "-", "detail": e.detail or "",
             "request_id": e.request_id or "-"}
            for e in events]
    emit_table(rows, output, ["at", "principal", "action", "repository", "outcome", "status",
                              "remote", "request_id", "detail"])



@admin.group("repository-policy")
def repository_policy() -> None:
    """Repository policies (who may do what in one repository)."""


@repository_policy.command("set")
@click.argument("repository")
@click.argument("document", type=click.File("r"))
@settings_options
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
    with identity_service(data_dir, config_file) as identity:
        try:
            identity.store.set_repository_policy(repository, text)
        except RepositoryNotFound:
            raise click.ClickException(f"no repository {repository!r}") from None
    click.echo(f"policy set on {repository}")


@repository_policy.command("get")
@click.argument("repository")
@settings_options
def repository_policy_get(repository: str, data_dir: Path | None,
                          config_file: Path | None) -> None:
    """Print a repository's policy."""
    with identity_service(data_dir, config_file) as identity:
        text = identity.store.get_repository_policy(repository)
    if text is None:
        raise click.ClickException(f"repository {repository!r} has no policy")
    click.echo(text)


@repository_policy.command("delete")
@click.argument("repository")
@settings_options
def repository_policy_delete(repository: str, data_dir: Path | None,
                             config_file: Path | None) -> None:
    """Remove a repository's policy."""
    from cargohold.storage.metadata import RepositoryNotFound

    with identity_service(data_dir, config_file) as identity:
        try:
            found = identity.store.delete_repository_policy(repository)
        except RepositoryNotFound:
            raise click.ClickException(f"no repository {repository!r}") from None
    if not found:
        raise click.ClickException(f"repository {repository!r} has no policy")
    click.echo(f"policy removed from {repository}")


from cargohold.cli.upstreams import (  # noqa: E402  (admin subgroups of their own module)
    pull_through_rules,
    replication_destinations,
    upstream_credentials,
)

admin.add_command(upstream_credentials)
admin.add_command(pull_through_rules)
admin.add_command(replication_destinations)

COMMANDS: list[click.Command] = [admin]
