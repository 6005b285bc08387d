"""A write that lost a race (a constraint, a deadlock the server broke) is run again; one that
keeps failing, or fails otherwise, is not hidden."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from psycopg import errors
from sqlalchemy.exc import IntegrityError, OperationalError

from cargohold.config import load_settings
from cargohold.services.storage import CONFLICT_RETRIES, Storage


def _storage(tmp_path: Path) -> Storage:
    return Storage.from_settings(load_settings(data_dir=tmp_path / "data"))


LOST_RACES = {
    "constraint": lambda: IntegrityError("INSERT", {}, Exception("foreign key")),
    "deadlock": lambda: OperationalError("UPDATE", {}, errors.DeadlockDetected("rolled back")),
    "serialization": lambda: OperationalError("UPDATE", {},
                                              errors.SerializationFailure("rolled back")),
}


@pytest.mark.parametrize("race", sorted(LOST_RACES))
def test_a_write_that_lost_a_race_is_retried(tmp_path: Path, race: str) -> None:
    storage = _storage(tmp_path)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise LOST_RACES[race]()
        return "done"

    try:
        assert asyncio.run(storage.db(flaky)) == "done"
        assert len(calls) == 2
    finally:
        storage.close()


def test_persistent_conflict_is_raised(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("unique"))

    try:
        with pytest.raises(IntegrityError):
            asyncio.run(storage.db(always))
        assert len(calls) == CONFLICT_RETRIES
    finally:
        storage.close()


def test_other_database_errors_are_not_retried(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise OperationalError("SELECT", {}, errors.LockNotAvailable("busy"))

    try:
        with pytest.raises(OperationalError):
            asyncio.run(storage.db(broken))
        assert len(calls) == 1
    finally:
        storage.close()
