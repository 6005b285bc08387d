"""A worker completes the sessions it opened without reading them back while their scratch
data is untouched; once another worker has written, cancelled or completed one, the database
decides, as before. Two `Storage`s on one data directory stand for two worker processes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cargohold.config import load_settings
from cargohold.services.blobs import UploadService
from cargohold.services.storage import Storage
from cargohold.wire.errors import ErrorCode, RegistryError

REPO = "team/app"
Scenario = Callable[[UploadService, UploadService, Storage], Awaitable[None]]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read(storage: Storage, digest: str) -> bytes:
    return b"".join([chunk async for chunk in storage.blobs.read(digest)])


def _run(data_dir: Path, scenario: Scenario) -> None:
    async def main() -> None:
        settings = load_settings(data_dir=data_dir)
        here, other = Storage.from_settings(settings), Storage.from_settings(settings)
        here.database.migrate()
        try:
            await scenario(UploadService(here), UploadService(other), here)
        finally:
            here.close()
            other.close()
    asyncio.run(main())


def _count_reads(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids whose session record `storage` reads (a pass-through wrapper)."""
    reads: list[str] = []
    get_upload = storage.metadata.get_upload

    def counted(repository: str, upload_id: str) -> Any:
        reads.append(upload_id)
        return get_upload(repository, upload_id)
    monkeypatch.setattr(storage.metadata, "get_upload", counted)
    return reads


def test_a_session_opened_here_is_completed_without_reading_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(here: UploadService, _other: UploadService, storage: Storage) -> None:
        reads = _count_reads(storage, monkeypatch)
        data = b"a small layer"
        state = await here.start(REPO)
        digest, size = await here.complete(REPO, state.upload_id, _digest(data), _body(data),
                                           None, len(data))
        assert (str(digest), size) == (_digest(data), len(data))
        assert reads == []
        assert await _read(storage, _digest(data)) == data
        assert await storage.read(storage.metadata.get_upload, REPO, state.upload_id) is None
    _run(tmp_path / "data", scenario)


def test_a_session_another_worker_wrote_to_is_completed_from_its_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusting the record as opened (size 0) would write the last chunk over the first."""
    async def scenario(here: UploadService, other: UploadService, storage: Storage) -> None:
        reads = _count_reads(storage, monkeypatch)
        first, last = b"written by the other worker, ", b"then finished here"
        state = await here.start(REPO)
        await other.append(REPO, state.upload_id, _body(first), None, len(first))
        whole = first + last
        digest, size = await here.complete(REPO, state.upload_id, _digest(whole), _body(last),
                                           None, len(last))
        assert (str(digest), size) == (_digest(whole), len(whole))
        assert reads == [state.upload_id]
        assert await _read(storage, _digest(whole)) == whole
    _run(tmp_path / "data", scenario)


@pytest.mark.parametrize("gone_by", ["cancel", "complete"])
def test_a_session_another_worker_ended_is_unknown_here(tmp_path: Path, gone_by: str) -> None:
    async def scenario(here: UploadService, other: UploadService, storage: Storage) -> None:
        data, late = b"the bytes the other worker took", b"a late retry with other bytes"
        state = await here.start(REPO)
        if gone_by == "cancel":
            await other.cancel(REPO, state.upload_id)
        else:
            await other.complete(REPO, state.upload_id, _digest(data), _body(data), None,
                                 len(data))
        with pytest.raises(RegistryError) as refused:
            await here.complete(REPO, state.upload_id, _digest(late), _body(late), None,
                                len(late))
        assert refused.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN
        assert await storage.blobs.locate(_digest(late)) is None
        assert await storage.read(storage.metadata.blob_size, REPO, _digest(late)) is None
    _run(tmp_path / "data", scenario)


def test_a_session_completed_under_another_name_is_unknown_and_kept(tmp_path: Path) -> None:
    async def scenario(here: UploadService, _other: UploadService, storage: Storage) -> None:
        data = b"pushed to the wrong repository"
        state = await here.start(REPO)
        with pytest.raises(RegistryError) as refused:
            await here.complete("team/other", state.upload_id, _digest(data), _body(data),
                                None, len(data))
        assert refused.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN
        assert await storage.blobs.locate(_digest(data)) is None
        digest, _ = await here.complete(REPO, state.upload_id, _digest(data), _body(data),
                                        None, len(data))
        assert await _read(storage, str(digest)) == data
    _run(tmp_path / "data", scenario)
