"""First start: an administrator and its access key, handed over as an AWS credentials file."""

from __future__ import annotations

import os
from pathlib import Path

from cargohold.services.identity import IdentityService
from cargohold.storage.identity import UserExists

ADMIN_USER = "admin"
CREDENTIALS_FILE = "admin-credentials"


def write_credentials_file(path: Path, key_id: str, secret: str) -> None:
    """An AWS shared-credentials file (profile [default]), readable by its owner only."""
    text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def bootstrap_administrator(identity: IdentityService, data_dir: Path) -> Path | None:
    """Create the administrator when there are no users yet; return the credentials file."""
    if identity.store.count_users() > 0:
        return None
    try:
        identity.create_user(ADMIN_USER, administrator=True)
    except UserExists:
        return None  # another process bootstrapped concurrently
    key = identity.create_access_key(ADMIN_USER)
    path = data_dir / CREDENTIALS_FILE
    write_credentials_file(path, key.id, key.secret)
    return path
