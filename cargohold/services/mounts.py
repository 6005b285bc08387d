"""Cross-repository blob mounts, with `from` or by automatic content discovery.

A mount links a blob the caller could pull anyway, so it needs the pull actions on a source
repository. Without `from`, any repository that holds the blob and that the caller may pull
will do. The registry-wide BLOB_MOUNTING setting can turn mounting off; a mount that cannot
happen is an ordinary upload (202), as the distribution spec allows.
"""

from __future__ import annotations

from cargohold.services.account_settings import AccountSettings
from cargohold.services.actions import SCOPE_ACTIONS
from cargohold.services.authz import Authorizer
from cargohold.services.blobs import UploadService
from cargohold.services.identity import Principal
from cargohold.storage.mounts import repositories_holding
from cargohold.wire.digest import parse_digest
from cargohold.wire.names import validate_name

PULL_ACTIONS = sorted(SCOPE_ACTIONS["pull"])
# How many holders of a blob discovery considers (in link order) before giving up.
DISCOVERY_CANDIDATES = 200


async def mount(uploads: UploadService, authorizer: Authorizer, settings: AccountSettings,
                principal: Principal, repository: str, digest: str,
                source: str | None) -> bool:
    """Link the blob into `repository` from `source` (or a discovered holder); False when it
    cannot be mounted and the client should upload it."""
    parsed = str(parse_digest(digest))
    named = validate_name(source) if source else None
    if not await settings.blob_mounting():
        return False
    storage = uploads.storage
    if named is not None:
        candidates = [named]
    else:
        candidates = await storage.read(repositories_holding, storage.database, parsed,
                                        repository, DISCOVERY_CANDIDATES)
    if not candidates:
        return False
    allowed = await storage.read(authorizer.allowed_repositories, principal, candidates,
                                 PULL_ACTIONS)
    for holder in allowed:
        if await uploads.mount(repository, parsed, holder):
            return True
    return False
