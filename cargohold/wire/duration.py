"""Durations as operators write them: `0`, `90`, `30s`, `10m`, `1h`, `7d`, `1h30m`."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration; a bare number is seconds. Raises ValueError on anything else."""
    if isinstance(text, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 10m, 1h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    position, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise ValueError(f"invalid duration {text!r}: use e.g. 0, 30s, 10m, 1h, 7d")
    return total
