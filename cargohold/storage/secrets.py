"""The server key: the one secret kept apart from the database.

It encrypts access-key secrets at rest and signs registry tokens and temporary passwords. It
comes from configuration (shared by every node of a cluster) or from `<data-dir>/server.key`,
created with mode 0600 on first start. Purpose-specific keys are derived from it with HKDF, so
one purpose's key never serves another.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE = "server.key"


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted: the server key is not the one it was sealed with."""


def _derive(master: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"cargohold/{purpose}".encode()).derive(master)


class ServerKeys:
    """Keys derived from the server key, one per purpose."""

    def __init__(self, master: bytes) -> None:
        if len(master) < 32:
            raise ValueError("the server key must be at least 32 bytes")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(master, "access-key-secrets")))
        self.token_key = _derive(master, "registry-tokens")
        self.password_key = _derive(master, "registry-passwords")
        self.download_key = _derive(master, "download-urls")
        digits = int.from_bytes(_derive(master, "registry-id", 8), "big") % 10**12
        self.registry_id = f"{digits:012d}"

    @classmethod
    def load(cls, data_dir: Path, configured: str | None = None) -> ServerKeys:
        """The configured key (base64), else the data directory's key file, created if absent."""
        if configured:
            return cls(base64.urlsafe_b64decode(configured.encode() + b"=="))
        path = data_dir / KEY_FILE
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes())  # another process created it first
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        return cls(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def unseal(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError from None
