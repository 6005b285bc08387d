"""The ``cargohold`` command line: the registry server, its administration, and a client for any
OCI registry. One module per command group:

- ``serving``: ``serve`` and ``login-password``
- ``administration``: ``admin`` (users, keys, policies, audit)
- ``transfers``: ``login``, ``logout``, ``push``, ``pull``, ``copy``
- ``charts``: ``chart`` (Helm); ``bundles``: ``bundle`` (OPA)
- ``browsing``: ``repos``, ``tags``, ``images``, ``tree``, ``manifest``, ``tag``, ``rm``
- ``common``: the shared options, error handling and output formatting

A new command group is one ``main.add_command(...)`` line at the end of this file.
"""

from __future__ import annotations

import tomllib

import click
import pydantic

from cargohold import __version__
from cargohold.cli import (
    administration,
    browsing,
    bundles,
    charts,
    events,
    registry_policy,
    retention,
    serving,
    transfers,
)
from cargohold.cli.common import emit_table as _emit
from cargohold.cli.common import identity_service as _identity
from cargohold.cli.common import settings_options as _settings_options
from cargohold.cli.common import table_output as _output
from cargohold.cli.common import when as _when

# The names above keep modules written against the former single-file cli.py importable.
__all__ = ["_emit", "_identity", "_output", "_settings_options", "_when", "main"]


class _Main(click.Group):
    """The top-level group: a bad configuration (TOML file, environment or options) is one
    clear message and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except pydantic.ValidationError as exc:
            raise click.ClickException(f"invalid configuration: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise click.ClickException(f"invalid configuration file: {exc}") from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cargohold")
def main() -> None:
    """Cargohold: a self-hostable OCI registry with an ECR-compatible API, and a client for
    any OCI registry."""


for _module in (serving, administration, transfers, charts, bundles, browsing):
    for _command in _module.COMMANDS:
        main.add_command(_command)

# Further command groups: one line each, e.g. `main.add_command(cli_topic.topic)`.
main.add_command(registry_policy.registry_policy)
main.add_command(retention.gc)
main.add_command(retention.lifecycle)
main.add_command(retention.fsck)
main.add_command(events.events)
