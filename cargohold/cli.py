"""The `cargohold` command line."""

from __future__ import annotations

from pathlib import Path

import click

from cargohold import __version__
from cargohold.config import load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cargohold")
def main() -> None:
    """Cargohold: a self-hostable OCI registry with an ECR-compatible API."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 5000].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the embedded database and blobs live [default: ./cargohold-data].")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True,
                                                         dir_okay=False),
              default=None, help="A TOML settings file (CARGOHOLD_* variables override it).")
@click.option("--workers", type=int, default=None, help="Worker processes [default: 1].")
def serve(host: str | None, port: int | None, data_dir: Path | None,
          config_file: Path | None, workers: int | None) -> None:
    """Run the registry (SQLite + local files unless configured otherwise)."""
    from cargohold.server import serve as run

    settings = load_settings(config_file, host=host, port=port, data_dir=data_dir,
                             workers=workers)
    run(settings)
