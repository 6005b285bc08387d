"""Repositories managed the ECR way: create with settings, describe, delete, tag, policies."""

from __future__ import annotations

import base64
import json
from typing import Any

from cargohold.services.policy import PolicyError, PolicyKind, parse_policy
from cargohold.services.storage import Storage
from cargohold.storage.metadata import RepositoryNotFound
from cargohold.storage.repositories import (
    RepositoryExists,
    RepositoryNotEmpty,
    RepositoryRecord,
    RepositorySettings,
)
from cargohold.wire.ecr import EcrError, invalid_parameter


def not_found(name: str) -> EcrError:
    return EcrError("RepositoryNotFoundException",
                    f"The repository with name '{name}' does not exist in this registry")


def encode_token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


MAX_ID = 2**62


def decode_token(token: str | None, *shape: type) -> Any:
    """A nextToken's value, which must be a list of the given types (ints within range);
    None without a token. Anything else a client sends back is refused, not trusted."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError):
        raise invalid_parameter("invalid nextToken") from None
    if not isinstance(value, list) or len(value) != len(shape) or not all(
            (isinstance(item, kind) and not isinstance(item, bool)) or item is None
            for item, kind in zip(value, shape, strict=True)) or any(
            isinstance(item, int) and not 0 <= item < MAX_ID for item in value):
        raise invalid_parameter("invalid nextToken")
    return value


class RepositoryService:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = storage.repositories

    async def create(self, name: str, settings: RepositorySettings,
                     resource_tags: dict[str, str]) -> RepositoryRecord:
        try:
            return await self.storage.db(self.store.create, name, settings, resource_tags)
        except RepositoryExists:
            raise EcrError("RepositoryAlreadyExistsException",
                           f"The repository with name '{name}' already exists") from None

    async def get(self, name: str) -> RepositoryRecord:
        record = await self.storage.db(self.store.get, name)
        if record is None:
            raise not_found(name)
        return record

    async def page(self, token: str | None, limit: int) -> tuple[list[RepositoryRecord],
                                                                 str | None]:
        after = decode_token(token, str)
        records = await self.storage.db(self.store.list, after[0] if after else None, limit + 1)
        if len(records) > limit:
            return records[:limit], encode_token([records[limit - 1].name])
        return records, None

    async def delete(self, name: str, force: bool) -> RepositoryRecord:
        try:
            record, uploads = await self.storage.db(self.store.delete, name, force=force)
        except RepositoryNotFound:
            raise not_found(name) from None
        except RepositoryNotEmpty:
            raise EcrError("RepositoryNotEmptyException",
                           f"The repository with name '{name}' cannot be deleted because it "
                           "still contains images") from None
        for upload_id in uploads:
            await self.storage.blobs.delete_upload(upload_id)
        return record

    async def update(self, name: str, **values: object) -> RepositoryRecord:
        try:
            return await self.storage.db(self.store.update_settings, name, **values)
        except RepositoryNotFound:
            raise not_found(name) from None

    async def resource_tags(self, name: str) -> dict[str, str]:
        try:
            return await self.storage.db(self.store.resource_tags, name)
        except RepositoryNotFound:
            raise not_found(name) from None

    async def tag(self, name: str, resource_tags: dict[str, str]) -> None:
        try:
            await self.storage.db(self.store.tag, name, resource_tags)
        except RepositoryNotFound:
            raise not_found(name) from None

    async def untag(self, name: str, keys: list[str]) -> None:
        try:
            await self.storage.db(self.store.untag, name, keys)
        except RepositoryNotFound:
            raise not_found(name) from None

    async def get_policy(self, name: str) -> str:
        await self.get(name)
        text = await self.storage.db(self.storage.identity.get_repository_policy, name)
        if text is None:
            raise EcrError("RepositoryPolicyNotFoundException",
                           f"Repository policy does not exist for the repository with name "
                           f"'{name}'")
        return text

    async def set_policy(self, name: str, text: str) -> None:
        try:
            parse_policy(text, PolicyKind.REPOSITORY)
        except PolicyError as exc:
            raise invalid_parameter(f"Invalid repository policy provided: {exc}") from None
        try:
            await self.storage.db(self.storage.identity.set_repository_policy, name, text)
        except RepositoryNotFound:
            raise not_found(name) from None

    async def delete_policy(self, name: str) -> str:
        text = await self.get_policy(name)
        await self.storage.db(self.storage.identity.delete_repository_policy, name)
        return text
