"""Images the ECR way: describe, list, batch get, batch delete, put; pull times recorded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from cargohold.services import metrics
from cargohold.services.batching import BatchWriter
from cargohold.services.manifests import ManifestService
from cargohold.services.repositories import decode_token, encode_token, not_found
from cargohold.services.storage import Storage
from cargohold.storage.images import ImageRecord
from cargohold.storage.metadata import RepositoryNotFound, now_us
from cargohold.wire.digest import digest_of, parse_digest
from cargohold.wire.ecr import EcrError
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.names import TAG_PATTERN

PULL_RECORD_INTERVAL = 60.0  # seconds between recorded pulls of one image, per worker


def image_ids(record: ImageRecord) -> list[dict[str, str]]:
    """ListImages' view: one identifier per tag, or the digest alone when untagged."""
    if not record.tags:
        return [{"imageDigest": record.digest}]
    return [{"imageDigest": record.digest, "imageTag": tag} for tag in record.tags]


@dataclass(frozen=True, slots=True)
class Failure:
    image_id: dict[str, str]
    code: str
    reason: str

    def shape(self) -> dict[str, Any]:
        return {"imageId": self.image_id, "failureCode": self.code, "failureReason": self.reason}


class ImageService:
    def __init__(self, storage: Storage, manifests: ManifestService) -> None:
        self.storage = storage
        self.store = storage.images
        self.manifests = manifests
        self.pulls: BatchWriter[tuple[str, str, int]] = BatchWriter(
            storage, storage.images.record_pulls, interval=1.0, name="pull-time")
        self._recorded: dict[tuple[str, str], float] = {}

    def note_pull(self, repository: str, digest: str) -> None:
        """Record a pull cheaply: at most one write per image per minute per worker."""
        key = (repository, digest)
        now = time.monotonic()
        last = self._recorded.get(key)
        if last is not None and now - last < PULL_RECORD_INTERVAL:
            return
        if len(self._recorded) > 100_000:
            self._recorded.clear()
        self._recorded[key] = now
        self.pulls.add((repository, digest, now_us()))

    async def _call(self, fn: Any, repository: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.storage.db(fn, repository, *args, **kwargs)
        except RepositoryNotFound:
            raise not_found(repository) from None

    async def page(self, repository: str, token: str | None, limit: int, tag_status: str,
                   artifact_type: str | None = None) -> tuple[list[ImageRecord], str | None]:
        after = decode_token(token, int)
        records = await self._call(self.store.page, repository,
                                   after_id=after[0] if after else 0, limit=limit + 1,
                                   tag_status=tag_status, artifact_type=artifact_type)
        if len(records) > limit:
            return records[:limit], encode_token([records[limit - 1].id])
        return records, None

    async def list_ids(self, repository: str, token: str | None, limit: int,
                       tag_status: str) -> tuple[list[dict[str, str]], str | None]:
        """ListImages: up to `limit` image ids (one per tag), resuming inside an image's tags."""
        after = decode_token(token, int, str)
        after_id, after_tag = (after[0], after[1]) if after else (0, None)
        start = after_id - 1 if after_tag is not None else after_id
        # limit + 2: the first image may be one whose tags the last page already listed.
        records = await self._call(self.store.page, repository, after_id=max(start, 0),
                                   limit=limit + 2, tag_status=tag_status)
        entries: list[tuple[int, dict[str, str]]] = []
        for record in records:
            for image_id in image_ids(record):
                if record.id == after_id and after_tag is not None and (
                        image_id.get("imageTag", "") <= after_tag):
                    continue
                entries.append((record.id, image_id))
        if len(entries) > limit:
            last_id, last = entries[limit - 1]
            return [e for _, e in entries[:limit]], encode_token([last_id, last.get("imageTag")])
        return [e for _, e in entries], None

    async def find(self, repository: str, image_id: dict[str, str]) -> ImageRecord | Failure:
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        if not digest and not tag:
            return Failure(image_id, "MissingDigestAndTag", "Neither digest nor tag given")
        if digest:
            try:
                parse_digest(digest)
            except RegistryError:
                return Failure(image_id, "InvalidImageDigest", "Invalid image digest")
        if tag and not TAG_PATTERN.match(tag):
            return Failure(image_id, "InvalidImageTag", "Invalid image tag")
        record = await self._call(self.store.find, repository, digest=digest or None,
                                  tag=tag or None)
        if record is None:
            if digest and tag and await self._call(self.store.find, repository, tag=tag):
                return Failure(image_id, "ImageTagDoesNotMatchDigest",
                               "Image tag does not match the image digest")
            return Failure(image_id, "ImageNotFound", "Requested image not found")
        return record

    async def describe(self, repository: str, image_ids: list[dict[str, str]]
                       ) -> list[ImageRecord]:
        found: dict[int, ImageRecord] = {}
        for image_id in image_ids:
            result = await self.find(repository, image_id)
            if isinstance(result, Failure):
                if result.code == "ImageNotFound":
                    raise EcrError("ImageNotFoundException",
                                   f"The image with imageId {image_id} does not exist within "
                                   f"the repository with name '{repository}'")
                raise EcrError("InvalidParameterException", result.reason)
            found[result.id] = result
        return list(found.values())

    async def _found(self, repository: str, image_ids: list[dict[str, str]],
                     failures: list[Failure]) -> AsyncIterator[tuple[dict[str, str],
                                                                     ImageRecord]]:
        """The images found for a batch request; the rest go to `failures`."""
        for image_id in image_ids:
            result = await self.find(repository, image_id)
            if isinstance(result, Failure):
                failures.append(result)
            else:
                yield image_id, result

    async def batch_get(self, repository: str, image_ids: list[dict[str, str]],
                        accepted: list[str] | None) -> tuple[list[dict[str, Any]],
                                                             list[Failure]]:
        images: list[dict[str, Any]] = []
        failures: list[Failure] = []
        async for image_id, result in self._found(repository, image_ids, failures):
            if accepted and result.media_type not in accepted:
                failures.append(Failure(image_id, "ImageNotFound",
                                        f"The manifest media type {result.media_type} is not "
                                        "among the accepted media types"))
                continue
            record = await self.manifests.get(repository, result.digest)
            self.note_pull(repository, result.digest)
            metrics.MANIFESTS_PULLED.labels(metrics.artifact_kind(
                record.media_type, result.artifact_type, result.config_media_type)).inc()
            identifier = {"imageDigest": result.digest}
            if image_id.get("imageTag"):
                identifier["imageTag"] = image_id["imageTag"]
            images.append({"imageId": identifier, "imageManifest": record.content.decode(),
                           "imageManifestMediaType": record.media_type})
        return images, failures

    async def batch_delete(self, repository: str, image_ids: list[dict[str, str]]
                           ) -> tuple[list[dict[str, str]], list[Failure]]:
        """Delete by digest (the image and its tags) or by tag (the tag; the image too once
        its last tag is gone), as ECR does; an image an index lists is kept."""
        deleted: list[dict[str, str]] = []
        failures: list[Failure] = []
        async for image_id, result in self._found(repository, image_ids, failures):
            tag = image_id.get("imageTag")
            referenced = await self._call(self.store.is_referenced, repository, result.digest)
            if tag and not image_id.get("imageDigest"):
                await self.manifests.delete(repository, tag)
                deleted.append({"imageDigest": result.digest, "imageTag": tag})
                if result.tags == (tag,) and not referenced:
                    await self.manifests.delete(repository, result.digest)
                continue
            if referenced:
                failures.append(Failure(image_id, "ImageReferencedByManifestList",
                                        "The image is referenced by a manifest list"))
                continue
            await self.manifests.delete(repository, result.digest)
            deleted.extend({"imageDigest": result.digest, "imageTag": t} for t in result.tags)
            if not result.tags:
                deleted.append({"imageDigest": result.digest})
        return deleted, failures

    async def put(self, repository: str, manifest: str, media_type: str | None,
                  tag: str | None, digest: str | None) -> dict[str, Any]:
        if await self.storage.db(self.storage.repositories.get, repository) is None:
            raise not_found(repository)
        content = manifest.encode()
        reference = digest or tag
        extra = [tag] if digest and tag else []
        if reference is None:
            reference = str(digest_of(content))
        try:
            result = await self.manifests.put(repository, reference, content, media_type,
                                              extra)
        except RegistryError as exc:
            raise _put_error(exc, repository, tag) from None
        if not result.changed:
            raise EcrError("ImageAlreadyExistsException",
                           f"Image with digest '{result.digest}' and tag '{tag}' already "
                           "exists in the repository")
        image_id = {"imageDigest": result.digest}
        if tag:
            image_id["imageTag"] = tag
        return {"imageId": image_id, "imageManifest": manifest,
                "imageManifestMediaType": result.media_type}


def _put_error(exc: RegistryError, repository: str, tag: str | None) -> EcrError:
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    if exc.code is ErrorCode.MANIFEST_BLOB_UNKNOWN:
        if detail.get("blobs"):
            return EcrError("LayersNotFoundException",
                            f"Layers {detail['blobs']} not found in repository '{repository}'")
        return EcrError("ReferencedImagesNotFoundException",
                        f"Images {detail.get('manifests')} not found in '{repository}'")
    if exc.code is ErrorCode.TAG_INVALID and detail.get("immutable"):
        return EcrError("ImageTagAlreadyExistsException",
                        f"The image tag '{tag}' already exists in the '{repository}' repository "
                        "and cannot be overwritten because the repository is immutable.")
    if exc.code is ErrorCode.DIGEST_INVALID:
        return EcrError("ImageDigestDoesNotMatchException", exc.message)
    if exc.code is ErrorCode.NAME_UNKNOWN:
        return not_found(repository)
    return EcrError("InvalidParameterException", f"Invalid parameter: {exc.message}")
