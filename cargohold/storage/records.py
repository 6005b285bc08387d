"""The metadata store's records and refusals, shared by its modules and their callers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass


def now_us() -> int:
    return time.time_ns() // 1000


class RepositoryNotFound(Exception):
    """The repository does not exist and may not be created by this operation."""


class MissingReferences(Exception):
    """A manifest names blobs or child manifests that the repository does not hold."""

    def __init__(self, blobs: Sequence[str], manifests: Sequence[str]) -> None:
        super().__init__(", ".join([*blobs, *manifests]))
        self.blobs = list(blobs)
        self.manifests = list(manifests)


class DescriptorMismatch(Exception):
    """A descriptor declares a size (or, for a manifest, a media type) other than that of the
    stored content it names."""

    def __init__(self, where: str, digest: str, field: str, declared: int | str,
                 stored: int | str) -> None:
        super().__init__(f"{where}: {digest} declares {field} {declared!r}, stored {stored!r}")
        self.where = where
        self.digest = digest
        self.field = field
        self.declared = declared
        self.stored = stored


class TagImmutable(Exception):
    """The repository's tag mutability forbids moving this existing tag."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


@dataclass(frozen=True, slots=True)
class ManifestPut:
    """What a manifest push changed: a new manifest row, and which tags now point at it."""

    created: bool
    moved_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    content: bytes


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class DeclaredReference:
    """A descriptor of a manifest that names stored content: where it is, and what it claims.

    kind "blob" names a blob of the repository, "manifest" a manifest of it. A "manifest"
    reference that is not stored and not in `child_digests` (a subject) is not required.
    """

    where: str
    kind: str
    digest: str
    size: int
    media_type: str | None = None  # checked against a stored manifest's media type


@dataclass(frozen=True, slots=True)
class NewManifest:
    """A validated manifest ready to be recorded."""

    digest: str
    media_type: str
    content: bytes
    artifact_type: str | None
    config_media_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None
    blob_digests: frozenset[str]
    child_digests: frozenset[str]
    declared: tuple[DeclaredReference, ...] = ()


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    repository: str
    algorithm: str
    size: int
    last_chunk_size: int
    undersized_part: bool
    created_at: int
    # The running digest and the blob store's scratch state saved with the last acknowledged
    # chunk (read with the session, in one statement); None when not saved at this size.
    hash_state: bytes | None = None
    scratch_state: str | None = None
