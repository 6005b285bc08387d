"""Content digests (`algorithm:encoded`), as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cargohold.wire.errors import ErrorCode, RegistryError

# Registered algorithms and the exact shape of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_LOWER_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def new_hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_digest(value: str | None) -> Digest:
    """Parse and validate a digest; only registered algorithms with well-formed hex pass."""
    if not value or len(value) > 256 or not _GRAMMAR.match(value):
        raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest format", {"digest": value})
    algorithm, encoded = value.split(":", 1)
    expected = ALGORITHMS.get(algorithm)
    if expected is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm!r}",
                            {"digest": value})
    if len(encoded) != expected or not _LOWER_HEX.fullmatch(encoded):
        raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest encoding", {"digest": value})
    return Digest(algorithm, encoded)


def is_digest(value: str) -> bool:
    """True when a manifest reference is a digest rather than a tag."""
    return ":" in value


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
