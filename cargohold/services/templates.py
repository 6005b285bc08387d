"""Repository creation templates: the settings a repository gets when Cargohold creates it.

A template covers the repositories under its prefix ("prod" covers "prod/…"; the longest
prefix wins); the ROOT template covers every repository no other template does. Templates
applied for CREATE_ON_PUSH configure repositories a push creates (tag mutability with its
exclusion filters, encryption settings, repository policy, resource tags, lifecycle policy), in
the creating transaction (`storage.ecr_settings.apply_creation_template`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cargohold.services.policy import PolicyError, PolicyKind, parse_policy
from cargohold.services.repositories import decode_token, encode_token
from cargohold.services.storage import Storage
from cargohold.storage.ecr_settings import (
    ROOT_PREFIX,
    EcrSettingsStore,
    TemplateExists,
    TemplateNotFound,
    TemplateRecord,
    TooManyTemplates,
)
from cargohold.wire.ecr import EcrError, invalid_parameter
from cargohold.wire.lifecycle import parse_policy as parse_lifecycle_policy

MAX_TEMPLATES = 100
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256


def normalize_prefix(prefix: str) -> str:
    """ECR assumes a `/` after every prefix: "prod" and "prod/" name the same template."""
    return prefix if prefix == ROOT_PREFIX else prefix.rstrip("/")


def template_not_found(prefix: str) -> EcrError:
    return EcrError("TemplateNotFoundException",
                    f"The repository creation template with prefix '{prefix}' does not exist "
                    "in this registry")


def validate(record: TemplateRecord) -> None:
    """Refuse a template that could not be applied as written."""
    if not record.applied_for:
        raise EcrError("ValidationException", "appliedFor must name at least one scenario")
    mutability = record.image_tag_mutability
    if record.exclusions and not mutability.endswith("_WITH_EXCLUSION"):
        raise invalid_parameter("exclusion filters need a *_WITH_EXCLUSION tag mutability")
    if mutability.endswith("_WITH_EXCLUSION") and not record.exclusions:
        raise invalid_parameter(f"{mutability} needs imageTagMutabilityExclusionFilters")
    if record.kms_key and record.encryption_type == "AES256":
        raise invalid_parameter("kmsKey needs encryptionType KMS or KMS_DSSE")
    for key, value in record.resource_tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise invalid_parameter(f"resource tag {key[:40]!r}: keys have 1 to {MAX_TAG_KEY} "
                                    f"characters, values at most {MAX_TAG_VALUE}")
    if record.repository_policy:
        try:
            parse_policy(record.repository_policy, PolicyKind.REPOSITORY)
        except PolicyError as exc:
            raise invalid_parameter(f"Invalid repository policy provided: {exc}") from None
    if record.lifecycle_policy:
        _check_lifecycle_policy(record.lifecycle_policy)


def _check_lifecycle_policy(text: str) -> None:
    """The same rule validation as PutLifecyclePolicy: a template never carries a policy that
    the repositories it creates could not have been given."""
    parse_lifecycle_policy(text)


class TemplateService:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = EcrSettingsStore(storage.database)

    async def create(self, record: TemplateRecord) -> TemplateRecord:
        record = dataclasses.replace(record, prefix=normalize_prefix(record.prefix))
        validate(record)
        try:
            return await self.storage.db(self.store.create_template, record, MAX_TEMPLATES)
        except TemplateExists:
            raise EcrError("TemplateAlreadyExistsException",
                           f"A repository creation template with prefix '{record.prefix}' "
                           "already exists") from None
        except TooManyTemplates:
            raise EcrError("LimitExceededException",
                           f"This registry already has {MAX_TEMPLATES} repository creation "
                           "templates, its limit") from None

    async def describe(self, prefixes: list[str] | None, token: str | None,
                       limit: int) -> tuple[list[TemplateRecord], str | None]:
        if prefixes is not None:
            wanted = sorted({normalize_prefix(p) for p in prefixes})
            return await self.storage.read(self.store.templates, wanted, None, None), None
        after = decode_token(token, str)
        records = await self.storage.read(self.store.templates, None,
                                          after[0] if after else None, limit + 1)
        if len(records) > limit:
            return records[:limit], encode_token([records[limit - 1].prefix])
        return records, None

    async def update(self, prefix: str, changes: dict[str, Any]) -> TemplateRecord:
        prefix = normalize_prefix(prefix)

        def change(current: TemplateRecord) -> TemplateRecord:
            updated = dataclasses.replace(current, **changes)
            if "image_tag_mutability" in changes and "exclusions" not in changes and (
                    not updated.image_tag_mutability.endswith("_WITH_EXCLUSION")):
                # A plain mutability set without filters drops the old filters with it.
                updated = dataclasses.replace(updated, exclusions=[])
            validate(updated)
            return updated

        try:
            return await self.storage.db(self.store.update_template, prefix, change)
        except TemplateNotFound:
            raise template_not_found(prefix) from None

    async def delete(self, prefix: str) -> TemplateRecord:
        prefix = normalize_prefix(prefix)
        try:
            return await self.storage.db(self.store.delete_template, prefix)
        except TemplateNotFound:
            raise template_not_found(prefix) from None
