"""The state every group of registry operations shares: the transport, the chunk size and
the token scopes a request needs."""

from __future__ import annotations

import os
from urllib.parse import urljoin

from cargohold.client.auth import repository_scope
from cargohold.client.reference import Reference
from cargohold.client.transport import (
    Transport,
    error_from_response,
)

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024  # CARGOHOLD_CHUNK_SIZE overrides it (bytes)


class RegistrySession:
    """A registry client's shared state; the operation classes build on it."""

    def __init__(self, transport: Transport, chunk_size: int | None = None) -> None:
        self.transport = transport
        if chunk_size is None:
            configured = os.environ.get("CARGOHOLD_CHUNK_SIZE", "")
            chunk_size = int(configured) if configured.isdigit() else DEFAULT_CHUNK_SIZE
        self.chunk_size = max(1, chunk_size)

    @staticmethod
    def _pull(ref: Reference) -> list[str]:
        return [repository_scope(ref.repository, "pull")]

    @staticmethod
    def _push(ref: Reference) -> list[str]:
        return [repository_scope(ref.repository, "pull", "push")]

    async def ping(self, host: str) -> None:
        """GET /v2/ with credentials: raises unless the registry accepts us."""
        resp = await self.transport.request("GET", host, "/v2/")
        if resp.status == 200:
            resp.release()
            return
        raise await error_from_response(resp, f"{host}")

    def _abs(self, ref: Reference, location: str) -> str:
        return urljoin(self.transport.base_url(ref.host) + "/", location)
