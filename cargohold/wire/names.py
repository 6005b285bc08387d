"""Repository-name and tag grammar of the distribution spec."""

from __future__ import annotations

import re

from cargohold.wire.errors import ErrorCode, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise RegistryError(ErrorCode.NAME_INVALID, "invalid repository name", {"name": name})
    return name


def validate_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", {"tag": tag})
    return tag
