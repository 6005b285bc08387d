"""The upload purge on S3: idle sessions lose their staging objects, and multipart uploads a
crash left unfinished are aborted; fresh sessions are kept."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from seaweed import SeaweedS3

from cargohold.config import load_settings
from cargohold.services.blobs import UploadService
from cargohold.services.storage import Storage


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_purge_removes_staging_objects_and_aborts_multipart_uploads(
        tmp_path: Path, seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.new_bucket()
    client = seaweed_s3.client()

    async def scenario() -> None:
        settings = load_settings(data_dir=tmp_path / "data",
                                 blob_store=seaweed_s3.blob_store_settings(bucket))
        storage = Storage.from_settings(settings)
        storage.database.migrate()
        uploads = UploadService(storage)
        try:
            old = await uploads.start("team/app")
            await uploads.append("team/app", old.upload_id, _chunks(os.urandom(1024)), None,
                                 None)
            # A node died while streaming a large chunk: its multipart upload was never finished.
            crashed = client.create_multipart_upload(
                Bucket=bucket, Key=f"uploads/{old.upload_id}/seg-crashed")["UploadId"]
            client.upload_part(Bucket=bucket, Key=f"uploads/{old.upload_id}/seg-crashed",
                               UploadId=crashed, PartNumber=1, Body=os.urandom(5 << 20))
            orphan = "44444444-4444-4444-8444-444444444444"  # scratch data without a session
            client.put_object(Bucket=bucket, Key=f"uploads/{orphan}/seg-x", Body=b"left over")
            # S3 timestamps have one-second resolution: a clear second either side of the cut.
            await asyncio.sleep(1.1)
            cut = time.time()
            await asyncio.sleep(1.1)
            fresh = await uploads.start("team/app")
            await uploads.append("team/app", fresh.upload_id, _chunks(b"new"), None, None)
            assert await uploads.purge_stale(max_idle_seconds=time.time() - cut) == 2
            keys = [item["Key"] for item in
                    client.list_objects_v2(Bucket=bucket, Prefix="uploads/").get("Contents", [])]
            assert keys and all(key.startswith(f"uploads/{fresh.upload_id}/") for key in keys)
            pending = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            assert [u["UploadId"] for u in pending if u["UploadId"] == crashed] == []
            assert await storage.db(storage.metadata.get_upload, "team/app",
                                    old.upload_id) is None
            status = await uploads.status("team/app", fresh.upload_id)
            assert status.size == 3
        finally:
            storage.close()

    asyncio.run(scenario())
