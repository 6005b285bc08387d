"""Serving: ``serve`` runs the registry, ``login-password`` mints a registry password from its
data directory (like ``aws ecr get-login-password``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cargohold.cli.common import identity_service, settings_options
from cargohold.config import load_settings


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 5000].")
@settings_options
@click.option("--workers", type=int, default=None,
              help="Worker processes [default: the number of CPUs].")
@click.option("--anonymous", is_flag=True, default=None,
              help="Open the registry to everyone without credentials (local experiments only).")
def serve(host: str | None, port: int | None, data_dir: Path | None,
          config_file: Path | None, workers: int | None, anonymous: bool | None) -> None:
    """Run the registry (SQLite + local files unless configured otherwise)."""
    from cargohold.server import serve as run

    run(load_settings(config_file, host=host, port=port, data_dir=data_dir, workers=workers,
                      anonymous=anonymous))


@click.command("login-password")
@click.option("--access-key-id", default=None,
              help="Key to mint for [default: $AWS_ACCESS_KEY_ID, else the admin key].")
@settings_options
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
    with identity_service(data_dir, config_file) as identity:
        try:
            password, _ = identity.mint_temporary_password(key_id)
        except AuthenticationFailed as exc:
            raise click.ClickException(f"{key_id}: {exc}") from None
    click.echo(password)


COMMANDS: list[click.Command] = [serve, login_password]
