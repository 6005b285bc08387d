"""What the command modules share: option decorators, error handling, output formatting.

Two families of commands live side by side. The server-side ones (``serve``, ``admin``,
``login-password``) work on a data directory and take ``settings_options``; the client ones
talk to any OCI registry and take ``registry_options``. Every command that prints data takes
``--output json`` and prints one JSON document with times in ISO 8601 (``to_json``). Errors
are one line on stderr with exit code 1; usage errors exit with 2.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from cargohold.client.errors import ClientError
from cargohold.client.reference import Reference, parse_reference
from cargohold.config import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


# ------------------------------------------------------------------------------ output

def _json_default(value: Any) -> Any:
    """Times as ISO 8601 (what botocore and our stores hand back), anything else refused."""
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def to_json(data: Any) -> str:
    """The one JSON rendering of every ``--output json`` command."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)


def iso_time(value: Any) -> str:
    """A datetime (as botocore returns them) in ISO 8601, UTC, to the second; else ``-``."""
    if not isinstance(value, dt.datetime):
        return str(value) if value else "-"
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def when(microseconds: int) -> str:
    """A stored timestamp (microseconds since the epoch) in ISO 8601, UTC."""
    return dt.datetime.fromtimestamp(microseconds / 1e6, dt.UTC).isoformat(timespec="seconds")


def emit(output: str, data: Any, text: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the text for people (computed only when needed)."""
    if output == "json":
        click.echo(to_json(data))
    else:
        message = text() if callable(text) else text
        if message:
            click.echo(message)


def emit_table(rows: list[dict[str, Any]], output: str, columns: list[str]) -> None:
    """Rows as a table with upper-case headings, or as a JSON list."""
    if output == "json":
        click.echo(to_json(rows))
        return
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


table_output = click.option("--output", "-o", type=click.Choice(["table", "json"]),
                            default="table", help="Output format.")


def output_option(fn: F) -> F:
    return click.option("--output", "output", type=click.Choice(["text", "json"]),
                        default="text", show_default=True,
                        help="Print text for people or JSON for scripts.")(fn)


def fail(message: str) -> click.ClickException:
    """A one-line error (runs of whitespace collapsed)."""
    return click.ClickException(" ".join(message.split()))


# ------------------------------------------------------------------------------ server side

def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--data-dir``: which registry's settings and data to use."""
    config = click.option("--config", "config_file",
                          type=click.Path(path_type=Path, exists=True, dir_okay=False),
                          default=None,
                          help="A TOML settings file (CARGOHOLD_* variables override it).")
    command = config(command)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the embedded database and blobs live "
                             "[default: ./cargohold-data].")(command)


@contextmanager
def identity_service(data_dir: Path | None, config_file: Path | None) -> Iterator[Any]:
    """The identity service straight on the database (the server may be running)."""
    from cargohold.http.app import identity_service as make_identity_service
    from cargohold.services.storage import Storage

    settings: Settings = load_settings(config_file, data_dir=data_dir)
    storage = Storage.from_settings(settings)
    try:
        storage.database.migrate()
        yield make_identity_service(storage)
    finally:
        storage.close()


# ------------------------------------------------------------------------------ client side

def handle_errors(fn: F) -> F:
    """Turn every failure into a one-line ``Error: ...`` with exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import aiohttp

        from cargohold.client.transport import describe_exception

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ClientError as exc:
            raise fail(str(exc)) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise fail(f"network error: {describe_exception(exc)}") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("CARGOHOLD_DEBUG"):
                raise
            raise fail(f"unexpected {type(exc).__name__}: {exc} (set CARGOHOLD_DEBUG=1 for "
                       "details)") from None

    return wrapper  # type: ignore[return-value]


def registry_options(fn: F) -> F:
    """``--registry-config``, ``--insecure``, ``--plain-http``: how to reach a registry."""
    fn = click.option("--registry-config", type=click.Path(dir_okay=False), default=None,
                      help="Docker config file with logins [default: $DOCKER_CONFIG/config.json "
                           "or ~/.docker/config.json].")(fn)
    fn = click.option("--insecure", is_flag=True,
                      help="Skip TLS certificate verification.")(fn)
    fn = click.option("--plain-http", is_flag=True,
                      help="Use HTTP instead of HTTPS (automatic for localhost and "
                           "127.0.0.1).")(fn)
    return fn


def transfer_options(fn: F) -> F:
    fn = click.option("--no-progress", is_flag=True,
                      help="No progress bars (they only show on a terminal anyway).")(fn)
    fn = click.option("--concurrency", type=click.IntRange(1, 16), default=3,
                      show_default=True, help="Blobs transferred at once.")(fn)
    return fn


def connection(plain_http: bool, insecure: bool, registry_config: str | None
               ) -> dict[str, Any]:
    """The ``registry_options`` values, as ``run_with_registry`` takes them."""
    return {"plain_http": plain_http, "insecure": insecure, "registry_config": registry_config}


def run_with_registry(opts: dict[str, Any], work: Callable[[Any], Awaitable[T]],
                      credentials: dict[str, Any] | None = None) -> T:
    """Run ``work(registry)`` on a fresh event loop with a transport built from ``opts``."""
    from cargohold.client.registry import Registry
    from cargohold.client.transport import Transport, TransportOptions

    options = TransportOptions(plain_http=bool(opts.get("plain_http")),
                               insecure=bool(opts.get("insecure")),
                               config_path=opts.get("registry_config"),
                               credentials=credentials or {})

    async def main() -> T:
        async with Transport(options) as transport:
            return await work(Registry(transport))

    return asyncio.run(main())


def transfers(no_progress: bool) -> Any:
    from cargohold.client.progress import Transfers

    return Transfers(enabled=False if no_progress else None)


def ref_arg(text: str, **kwargs: Any) -> Reference:
    return parse_reference(text, **kwargs)
