"""Manifests and tags: the registry's rules for what may be pushed and listed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cargohold.services import metrics
from cargohold.services.storage import Storage
from cargohold.storage.metadata import (
    DeclaredReference,
    DescriptorMismatch,
    ManifestRecord,
    MissingReferences,
    NewManifest,
    RepositoryNotFound,
    TagImmutable,
)
from cargohold.wire.digest import digest_of, is_digest, parse_digest
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.manifest import parse_manifest
from cargohold.wire.names import TAG_PATTERN, validate_tag


@dataclass(frozen=True, slots=True)
class PushResult:
    digest: str
    subject: str | None
    tags: list[str]
    media_type: str
    changed: bool  # a new manifest, or a tag that now points at it


class ManifestService:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get(self, repository: str, reference: str) -> ManifestRecord:
        if is_digest(reference):
            digest = str(parse_digest(reference))
            record = await self.storage.read(self.storage.metadata.get_manifest, repository,
                                           digest=digest)
        else:
            # A malformed tag names nothing: 404, as the conformance suite expects.
            record = None if not TAG_PATTERN.match(reference) else await self.storage.read(
                self.storage.metadata.get_manifest, repository, tag=reference)
        if record is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
        return record

    async def put(self, repository: str, reference: str, content: bytes,
                  content_type: str | None, extra_tags: Sequence[str] = ()) -> PushResult:
        """Validate and store a manifest exactly as pushed, then point its tags at it."""
        if len(content) > self.storage.settings.max_manifest_size:
            raise manifest_too_large(self.storage.settings.max_manifest_size)
        tag_names = [validate_tag(tag) for tag in extra_tags]
        if is_digest(reference):
            expected = parse_digest(reference)
            actual = digest_of(content, expected.algorithm)
            if actual != expected:
                raise RegistryError(ErrorCode.DIGEST_INVALID,
                                    "manifest content does not match the digest in the URL",
                                    {"expected": str(expected), "actual": str(actual)})
        else:
            tag_names.insert(0, validate_tag(reference))
            actual = digest_of(content)
        parsed = parse_manifest(content, content_type)
        manifest = NewManifest(
            digest=str(actual),
            media_type=parsed.media_type,
            content=content,
            artifact_type=parsed.artifact_type,
            config_media_type=parsed.config_media_type,
            subject_digest=parsed.subject.digest if parsed.subject else None,
            annotations=parsed.annotations,
            blob_digests=frozenset(parsed.required_blobs()),
            child_digests=frozenset(parsed.required_manifests()),
            declared=tuple(DeclaredReference(where, kind, d.digest, d.size, d.media_type)
                           for where, kind, d in parsed.declared_references()),
        )
        try:
            outcome = await self.storage.write(self.storage.metadata.put_manifest, repository,
                                            manifest, list(dict.fromkeys(tag_names)),
                                            create=self.storage.settings.create_on_push)
        except TagImmutable as exc:
            raise RegistryError(ErrorCode.TAG_INVALID,
                                f"tag {exc.tag!r} already exists and the repository's tags "
                                "are immutable", {"tag": exc.tag, "immutable": True}) from None
        except RepositoryNotFound:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repository}) from None
        except DescriptorMismatch as exc:
            raise RegistryError(ErrorCode.MANIFEST_INVALID,
                                f"{exc.where}: {exc.field} {exc.declared!r} does not match the "
                                f"stored content of {exc.digest} ({exc.stored!r})",
                                {"descriptor": exc.where, "digest": exc.digest,
                                 exc.field: exc.declared, "stored": exc.stored}) from None
        except MissingReferences as exc:
            raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN,
                                detail={"blobs": exc.blobs, "manifests": exc.manifests}) from None
        metrics.labelled(metrics.MANIFESTS_PUSHED, metrics.artifact_kind(
            manifest.media_type, manifest.artifact_type, manifest.config_media_type)).inc()
        return PushResult(manifest.digest, manifest.subject_digest, tag_names,
                          manifest.media_type, outcome.created or bool(outcome.moved_tags))

    async def delete(self, repository: str, reference: str) -> None:
        """Delete by digest (the manifest and its tags) or by tag (the tag only)."""
        metadata = self.storage.metadata
        if is_digest(reference):
            deleted = await self.storage.db(metadata.delete_manifest, repository,
                                            str(parse_digest(reference)))
        elif TAG_PATTERN.match(reference):
            deleted = await self.storage.db(metadata.delete_tag, repository, reference)
        else:
            deleted = False
        if not deleted:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})

    async def tags(self, repository: str, last: str | None, limit: int | None) -> list[str]:
        names = await self.storage.read(self.storage.metadata.list_tags, repository, last, limit)
        if names is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repository})
        return names

    async def catalog(self, last: str | None, limit: int | None) -> list[str]:
        return await self.storage.db(self.storage.metadata.list_repositories, last, limit)


def manifest_too_large(limit: int) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_TOO_LARGE, f"manifest exceeds {limit} bytes",
                         {"limit": limit})
