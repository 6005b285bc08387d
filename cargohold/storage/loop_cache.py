"""Reads on the event loop's SQLite connection, remembered while the database is unchanged.

Why: a manifest GET by tag is the hottest read, and under load its query was about a tenth of
a worker's CPU. SQLite's `PRAGMA data_version` (a few microseconds) changes on a connection
whenever any other connection, in this process or another, has committed since it last
looked. So a result remembered under one value is exactly what the query would return again
while the value holds, and the first read after any commit anywhere finds the value changed
and forgets everything. Only SQLite reads on the loop use it (PostgreSQL nodes share no such
counter), and only small results are kept.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class VersionedCache(Generic[V]):
    """Values valid for one data version; a new version empties it."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._version: int | None = None
        self._entries: dict[Hashable, V] = {}

    def get(self, version: int, key: Hashable) -> V | None:
        if version != self._version:
            self._entries.clear()
            self._version = version
            return None
        return self._entries.get(key)

    def put(self, version: int, key: Hashable, value: V) -> None:
        """Keep `value`, read at `version` or later (a later state is forgotten at the next
        `get`, which sees the newer version)."""
        if version != self._version:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = value
