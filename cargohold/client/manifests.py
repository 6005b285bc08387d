"""Manifests: fetch (size-capped, digest-verified), resolve, push, delete."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

from cargohold.client import mediatypes as mt
from cargohold.client.auth import repository_scope
from cargohold.client.content import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    Manifest,
    digest_bytes,
    sha256_digest,
)
from cargohold.client.errors import ClientError, DigestMismatch, NotFound
from cargohold.client.reference import Reference
from cargohold.client.session import RegistrySession
from cargohold.client.transport import (
    ConnectionLost,
    describe_exception,
    error_from_response,
)


def content_type(resp: aiohttp.ClientResponse) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()


def infer_media_type(data: bytes, header: str) -> str:
    if header in mt.ALL_MANIFEST_TYPES or (header and header not in (
            "application/json", "text/plain", "application/octet-stream")):
        return header
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return header or mt.OCI_MANIFEST
    if isinstance(parsed, dict):
        if parsed.get("mediaType"):
            return str(parsed["mediaType"])
        if "manifests" in parsed:
            return mt.OCI_INDEX
    return mt.OCI_MANIFEST


@dataclass
class PutResult:
    digest: str
    subject: str | None  # the OCI-Subject header, when the registry processed a subject
    location: str | None = None


class ManifestOperations(RegistrySession):
    """Manifests and indexes, by tag or digest."""

    async def get_manifest(self, ref: Reference, reference: str | None = None,
                           accept: str = mt.ACCEPT_MANIFESTS) -> Manifest:
        target = reference or ref.reference
        if not target:
            raise ClientError(f"{ref}: a tag or digest is needed")
        resp = await self.transport.request(
            "GET", ref.host, f"/v2/{ref.repository}/manifests/{target}",
            scopes=self._pull(ref), headers={"Accept": accept})
        what = f"{ref.repo_ref}{'@' if ':' in target else ':'}{target}"
        if resp.status != 200:
            raise await error_from_response(resp, f"manifest {what}")
        async with resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
                raise ClientError(f"manifest {what} is larger than {MAX_MANIFEST_SIZE} bytes")
            try:
                data = await resp.content.read(MAX_MANIFEST_SIZE + 1)
                while len(data) <= MAX_MANIFEST_SIZE:
                    more = await resp.content.read(MAX_MANIFEST_SIZE + 1 - len(data))
                    if not more:
                        break
                    data += more
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ConnectionLost(f"reading manifest {what}: {describe_exception(exc)}"
                                     ) from None
            if len(data) > MAX_MANIFEST_SIZE:
                raise ClientError(f"manifest {what} is larger than {MAX_MANIFEST_SIZE} bytes")
            media_type = infer_media_type(data, content_type(resp))
            header_digest = resp.headers.get("Docker-Content-Digest")
        if ":" in target:
            algorithm = target.split(":", 1)[0]
            actual = digest_bytes(data, algorithm)
            if actual != target:
                raise DigestMismatch(f"manifest {what}: received content has digest {actual}; "
                                     "refusing it")
            digest = target
        else:
            digest = sha256_digest(data)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise DigestMismatch(f"manifest {what}: content digest {digest} differs from "
                                     f"the registry's Docker-Content-Digest {header_digest}")
        return Manifest(data=data, media_type=media_type, digest=digest)

    async def resolve(self, ref: Reference) -> Descriptor:
        """The descriptor a tag or digest points at (HEAD, falling back to GET)."""
        target = ref.reference
        if not target:
            raise ClientError(f"{ref}: a tag or digest is needed")
        resp = await self.transport.request(
            "HEAD", ref.host, f"/v2/{ref.repository}/manifests/{target}",
            scopes=self._pull(ref), headers={"Accept": mt.ACCEPT_MANIFESTS})
        resp.release()
        if resp.status == 200:
            digest = resp.headers.get("Docker-Content-Digest")
            length = resp.headers.get("Content-Length", "")
            media_type = content_type(resp)
            if digest and length.isdigit() and media_type in mt.ALL_MANIFEST_TYPES and (
                    ":" not in target or digest == target):
                return Descriptor(media_type=media_type, digest=digest, size=int(length))
        elif resp.status == 404:
            raise NotFound(f"manifest {ref} not found", 404)
        manifest = await self.get_manifest(ref)
        return Descriptor(media_type=manifest.media_type, digest=manifest.digest,
                          size=manifest.size, artifact_type=manifest.artifact_type())

    async def manifest_exists(self, ref: Reference, digest: str) -> bool:
        resp = await self.transport.request(
            "HEAD", ref.host, f"/v2/{ref.repository}/manifests/{digest}",
            scopes=self._pull(ref), headers={"Accept": mt.ACCEPT_MANIFESTS})
        resp.release()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise await error_from_response(resp, f"manifest {ref.repo_ref}@{digest}")

    async def put_manifest(self, ref: Reference, reference: str, data: bytes,
                           media_type: str) -> PutResult:
        resp = await self.transport.request(
            "PUT", ref.host, f"/v2/{ref.repository}/manifests/{reference}",
            scopes=self._push(ref), headers={"Content-Type": media_type}, body=lambda: data)
        sep = "@" if ":" in reference else ":"
        if resp.status not in (200, 201, 202):
            raise await error_from_response(resp, f"pushing manifest {ref.repo_ref}{sep}"
                                                  f"{reference}")
        resp.release()
        digest = sha256_digest(data)
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise DigestMismatch(f"registry stored manifest as {returned}, expected {digest}")
        return PutResult(digest=digest, subject=resp.headers.get("OCI-Subject"),
                         location=resp.headers.get("Location"))

    async def delete_manifest(self, ref: Reference, reference: str) -> None:
        resp = await self.transport.request(
            "DELETE", ref.host, f"/v2/{ref.repository}/manifests/{reference}",
            scopes=[repository_scope(ref.repository, "delete", "pull")])
        sep = "@" if ":" in reference else ":"
        if resp.status not in (200, 202, 204):
            raise await error_from_response(resp, f"deleting {ref.repo_ref}{sep}{reference}")
        resp.release()

