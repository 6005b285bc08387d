"""ECR response shapes built from registry records (timestamps are epoch seconds)."""

from __future__ import annotations

from typing import Any

from cargohold.storage.images import ImageRecord
from cargohold.storage.repositories import RepositoryRecord


def repository_arn(region: str, registry_id: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{registry_id}:repository/{name}"


def repository_shape(record: RepositoryRecord, *, registry_id: str, region: str,
                     host: str) -> dict[str, Any]:
    settings = record.settings
    shape: dict[str, Any] = {
        "repositoryArn": repository_arn(region, registry_id, record.name),
        "registryId": registry_id,
        "repositoryName": record.name,
        "repositoryUri": f"{host}/{record.name}",
        "createdAt": record.created_at / 1e6,
        "imageTagMutability": settings.image_tag_mutability,
        "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push},
        "encryptionConfiguration": {"encryptionType": settings.encryption_type},
    }
    if settings.exclusions:
        shape["imageTagMutabilityExclusionFilters"] = exclusion_filters(settings.exclusions)
    if settings.kms_key:
        shape["encryptionConfiguration"]["kmsKey"] = settings.kms_key
    return shape


def exclusion_filters(exclusions: list[str]) -> list[dict[str, str]]:
    return [{"filterType": "WILDCARD", "filter": pattern} for pattern in exclusions]


def image_detail(record: ImageRecord, *, registry_id: str, repository: str) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "registryId": registry_id,
        "repositoryName": repository,
        "imageDigest": record.digest,
        "imageSizeInBytes": record.image_size,
        "imagePushedAt": record.pushed_at / 1e6,
        "imageManifestMediaType": record.media_type,
        "imageStatus": "ACTIVE",
    }
    if record.tags:
        detail["imageTags"] = list(record.tags)
    if record.artifact_type:
        detail["artifactMediaType"] = record.artifact_type
    if record.last_pulled_at is not None:
        detail["lastRecordedPullTime"] = record.last_pulled_at / 1e6
    if record.subject_digest:
        detail["subjectManifestDigest"] = record.subject_digest
    return detail

