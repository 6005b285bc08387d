"""Idle upload sessions are purged with their scratch data; fresh ones are kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cargohold.config import load_settings
from cargohold.services.blobs import UploadService
from cargohold.services.storage import Storage


async def _scenario(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    storage = Storage.from_settings(settings)
    storage.database.migrate()
    uploads = UploadService(storage)
    try:
        old = await uploads.start("team/app")
        orphan = data_dir / "blobs" / "uploads" / "44444444-4444-4444-8444-444444444444"
        orphan.write_bytes(b"left by a crash before its session was recorded")
        await asyncio.sleep(0.05)
        assert await uploads.purge_stale(max_idle_seconds=0.01) == 2
        assert not orphan.exists()
        fresh = await uploads.start("team/app")
        assert await uploads.purge_stale(max_idle_seconds=3600) == 0
        scratch = {p.name for p in (data_dir / "blobs" / "uploads").iterdir()}
        assert old.upload_id not in scratch and fresh.upload_id in scratch
        assert await storage.db(storage.metadata.get_upload, "team/app", old.upload_id) is None
    finally:
        storage.close()


def test_purge_stale_upload_sessions(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path / "data"))
