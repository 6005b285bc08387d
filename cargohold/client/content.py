"""What the client moves: descriptors, manifests exactly as received, blob sources that stream
from disk, and their digests."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cargohold.client import mediatypes as mt
from cargohold.client.errors import ClientError, DigestMismatch
from cargohold.client.reference import validate_digest

MAX_MANIFEST_SIZE = 8 * 1024 * 1024
READ_SIZE = 256 * 1024


class Task(Protocol):
    """A progress sink (a progress-bar row, or nothing)."""

    def advance(self, amount: int) -> None: ...

    def set_completed(self, completed: int) -> None: ...

    def finish(self, note: str = "") -> None: ...


class NullTask:
    def advance(self, amount: int) -> None:
        pass

    def set_completed(self, completed: int) -> None:
        pass

    def finish(self, note: str = "") -> None:
        pass


# ------------------------------------------------------------------------------ data types

@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> Descriptor:
        if not isinstance(data, dict):
            raise ClientError(f"{where}: a descriptor is not a JSON object")
        try:
            media_type = str(data["mediaType"]) if data.get("mediaType") else ""
            digest = str(data["digest"])
            size = int(data["size"])
        except (KeyError, TypeError, ValueError):
            raise ClientError(f"{where}: a descriptor lacks digest or size") from None
        if size < 0:
            raise ClientError(f"{where}: a descriptor has a negative size")
        validate_digest(digest)
        known = {"mediaType", "digest", "size", "annotations", "artifactType", "platform"}
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ClientError(f"{where}: descriptor annotations are not an object")
        return cls(media_type=media_type, digest=digest, size=size,
                   annotations={str(k): str(v) for k, v in annotations.items()},
                   artifact_type=data.get("artifactType") or None,
                   platform=data.get("platform") or None,
                   extra={k: v for k, v in data.items() if k not in known})

    @property
    def title(self) -> str | None:
        return self.annotations.get(mt.ANNOTATION_TITLE)


@dataclass
class Manifest:
    """A manifest or index exactly as the registry returned it."""

    data: bytes
    media_type: str
    digest: str
    _json: dict[str, Any] | None = None

    @property
    def json(self) -> dict[str, Any]:
        if self._json is None:
            try:
                parsed = json.loads(self.data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ClientError(f"manifest {self.digest} is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise ClientError(f"manifest {self.digest} is not a JSON object")
            self._json = parsed
        return self._json

    @property
    def is_index(self) -> bool:
        return mt.is_index(self.media_type)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size,
                          artifact_type=self.artifact_type(),
                          annotations=dict(self.json.get("annotations") or {}))

    def config(self) -> Descriptor | None:
        if self.is_index or "config" not in self.json:
            return None
        return Descriptor.from_dict(self.json["config"], f"manifest {self.digest}")

    def layers(self) -> list[Descriptor]:
        if self.is_index:
            return []
        return [Descriptor.from_dict(d, f"manifest {self.digest}")
                for d in self.json.get("layers") or []]

    def children(self) -> list[Descriptor]:
        if not self.is_index:
            return []
        return [Descriptor.from_dict(d, f"index {self.digest}")
                for d in self.json.get("manifests") or []]

    def subject(self) -> Descriptor | None:
        subject = self.json.get("subject")
        return Descriptor.from_dict(subject, f"manifest {self.digest}") if subject else None

    def blobs(self) -> list[Descriptor]:
        config = self.config()
        return ([config] if config else []) + self.layers()

    def artifact_type(self) -> str | None:
        """``artifactType``, else the config's media type (for an index: its artifactType)."""
        declared = self.json.get("artifactType")
        if declared:
            return str(declared)
        if self.is_index:
            return None
        config = self.json.get("config")
        if isinstance(config, dict) and config.get("mediaType"):
            return str(config["mediaType"])
        return None


@dataclass
class BlobSource:
    """Something to upload: a file on disk (streamed) or a small bytes object."""

    digest: str
    size: int
    media_type: str = "application/octet-stream"
    path: Path | None = None
    data: bytes | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str, label: str = "") -> BlobSource:
        return cls(digest=sha256_digest(data), size=len(data), media_type=media_type, data=data,
                   label=label)

    @classmethod
    def from_file(cls, path: Path, media_type: str, label: str = "") -> BlobSource:
        digest, size = file_digest(path)
        return cls(digest=digest, size=size, media_type=media_type, path=path,
                   label=label or path.name)

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size,
                          annotations=dict(self.annotations))

    async def chunks(self, start: int, end: int, task: Task) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the source, read lazily; progress advances as they go."""
        if self.data is not None:
            view = self.data[start:end]
            for pos in range(0, len(view), READ_SIZE):
                piece = view[pos:pos + READ_SIZE]
                task.advance(len(piece))
                yield piece
            return
        assert self.path is not None
        remaining = end - start
        with open(self.path, "rb") as handle:
            handle.seek(start)
            while remaining > 0:
                piece = handle.read(min(READ_SIZE, remaining))
                if not piece:
                    raise ClientError(f"{self.path} shrank while it was being uploaded")
                remaining -= len(piece)
                task.advance(len(piece))
                yield piece
                await asyncio.sleep(0)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_bytes(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def file_digest(path: Path, algorithm: str = "sha256") -> tuple[str, int]:
    hasher = hashlib.new(algorithm)
    size = 0
    try:
        with open(path, "rb") as handle:
            while True:
                piece = handle.read(1 << 20)
                if not piece:
                    break
                hasher.update(piece)
                size += len(piece)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    return f"{algorithm}:{hasher.hexdigest()}", size


def verify_bytes(data: bytes, desc: Descriptor, what: str) -> None:
    algorithm = desc.digest.split(":", 1)[0]
    actual = digest_bytes(data, algorithm)
    if len(data) != desc.size or actual != desc.digest:
        raise DigestMismatch(f"blob {what} failed verification: got {len(data)} bytes with "
                             f"digest {actual}, expected {desc.size} bytes (corrupted or "
                             "tampered)")

