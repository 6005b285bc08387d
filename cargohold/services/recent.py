"""A bounded map of the most recently used entries: what one worker remembers of the upload
sessions it served, so that the next request of a session can skip a read it would repeat.
Memory only, and only ever a shortcut: every entry is checked before it is trusted."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class Recent(Generic[V]):
    """Up to `capacity` entries; putting one more forgets the least recently put."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, V] = OrderedDict()

    def put(self, key: str, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> V | None:
        return self._entries.pop(key, None)
