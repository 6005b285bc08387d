"""`cargohold events list|tail`: registry events from the outbox, read straight from the
database (the server may be running)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cargohold.config import load_settings

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since_us(value: str) -> int:
    """`30m`, `2h`, `7d`, or an ISO 8601 time, as epoch microseconds."""
    match = _DURATION.match(value.strip())
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return int((time.time() - seconds) * 1e6)
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (30m, 2h, 7d) nor an ISO "
                                 "8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1e6)


def _options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--config", "config_file", default=None,
                           type=click.Path(path_type=Path, exists=True, dir_okay=False),
                           help="A TOML settings file (CARGOHOLD_* variables override it).")(
                               command)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where the embedded database lives [default: ./cargohold-data]."
                        )(command)


def _store(data_dir: Path | None, config_file: Path | None) -> Any:
    from cargohold.storage.database import Database
    from cargohold.storage.events import EventStore

    settings = load_settings(config_file, data_dir=data_dir)
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise click.ClickException(f"no registry database at {url[len('sqlite:///'):]}")
    return EventStore(Database(url))


def _row(event: Any, deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = event.data
    row = {"id": event.event_id,
           "time": dt.datetime.fromtimestamp(event.created_at / 1e6, dt.UTC).isoformat(),
           "action": event.action, "repository": data.get("repository"),
           "digest": data.get("digest"), "tag": data.get("tag"),
           "media_type": data.get("media_type"),
           "request_id": ((data.get("context") or {}).get("request") or {}).get("id")}
    if deliveries is not None:
        row["deliveries"] = deliveries
    return row


@click.group()
def events() -> None:
    """Registry events (pushes, tags, deletes, pulls) recorded in the outbox."""


@events.command("list")
@click.option("--since", default="24h", show_default=True,
              help="A duration back from now (30m, 2h, 7d) or an ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Show at most this many (the newest).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
@_options
def list_events(since: str, limit: int, output: str, data_dir: Path | None,
                config_file: Path | None) -> None:
    """Recent events, oldest first, with their delivery state per endpoint."""
    store = _store(data_dir, config_file)
    try:
        found = store.since(since_us=_since_us(since), limit=limit, newest=True)
        states = store.delivery_states([event.row for event in found])
    finally:
        store.database.dispose()
    rows = [_row(event, states.get(event.row, [])) for event in found]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        summary = ",".join(f"{d['consumer']}={d['status']}" for d in row["deliveries"]) or "-"
        click.echo(f"{row['time']}  {row['action']:<9} {row['repository']}"
                   f"{':' + row['tag'] if row['tag'] else ''}@{row['digest'] or '-'}  "
                   f"deliveries: {summary}")


@events.command("tail")
@click.option("--since", default=None, help="Also print events from this far back first.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=0.5, show_default=True,
              help="Seconds between polls.")
@_options
def tail(since: str | None, interval: float, data_dir: Path | None,
         config_file: Path | None) -> None:
    """Print events as they happen, one JSON object per line (Ctrl-C to stop)."""
    store = _store(data_dir, config_file)
    try:
        last = 0
        if since is not None:
            backlog = store.since(since_us=_since_us(since), limit=10_000)
        else:  # from now on
            backlog = []
            newest = store.since(limit=1, newest=True)
            last = newest[-1].row if newest else 0
        for event in backlog:
            click.echo(json.dumps(_row(event)))
            last = event.row
        while True:
            for event in store.since(after_row=last, limit=1000):
                click.echo(json.dumps(_row(event)))
                last = event.row
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        store.database.dispose()
