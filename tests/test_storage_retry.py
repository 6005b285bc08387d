"""A write that lost a race on a constraint is run again; one that keeps failing is not hidden."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from cargohold.config import load_settings
from cargohold.services.storage import CONFLICT_RETRIES, Storage


def _storage(tmp_path: Path) -> Storage:
    return Storage.from_settings(load_settings(data_dir=tmp_path / "data"))


def test_conflicting_write_is_retried(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("foreign key"))
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
