"""Errors the client raises. Every message is one line meant for a person to read."""

from __future__ import annotations


class ClientError(Exception):
    """A failure the CLI reports as ``Error: <message>`` with exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class InvalidReference(ClientError):
    """A malformed ``host[:port]/name[:tag|@digest]`` reference."""


class RegistryError(ClientError):
    """The registry answered with an error status."""

    def __init__(self, message: str, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(RegistryError):
    """404: the manifest, blob, repository or tag does not exist."""


class AuthError(RegistryError):
    """401/403: missing, wrong or insufficient credentials."""


class DigestMismatch(ClientError):
    """Content whose digest or size does not match its descriptor."""


class UnsafePath(ClientError):
    """A layer title or archive member that would land outside the output folder."""
