"""Listings: tags, the catalog (both paginated by ``Link``) and referrers, with the tag-schema
fallback for registries without the referrers API."""

from __future__ import annotations

import json
from urllib.parse import quote, urljoin

import aiohttp

from cargohold.client import mediatypes as mt
from cargohold.client.content import Descriptor
from cargohold.client.errors import ClientError, NotFound
from cargohold.client.manifests import ManifestOperations, content_type
from cargohold.client.reference import Reference
from cargohold.client.transport import error_from_response


def referrers_tag(digest: str) -> str:
    algorithm, hexpart = digest.split(":", 1)
    return f"{algorithm}-{hexpart}"[:128]


class ListingOperations(ManifestOperations):
    """Tags, the catalog and referrers of a repository."""

    async def _paginate(self, host: str, path: str, scopes: list[str], key: str,
                        what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        seen: set[str] = set()
        while url and url not in seen and len(seen) < 10_000:
            seen.add(url)
            resp = await self.transport.request("GET", host, url, scopes=scopes)
            if resp.status != 200:
                raise await error_from_response(resp, what)
            async with resp:
                try:
                    data = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ClientError, ValueError):
                    raise ClientError(f"{what}: the registry returned invalid JSON") from None
                link = resp.links.get("next")
                next_url = str(link.get("url")) if link else None
            page = (data or {}).get(key) or []
            items.extend(str(x) for x in page)
            url = urljoin(self.transport.base_url(host) + "/", next_url) if next_url else None
        return items

    async def list_tags(self, ref: Reference) -> list[str]:
        return await self._paginate(ref.host, f"/v2/{ref.repository}/tags/list?n=1000",
                                    self._pull(ref), "tags", f"tags of {ref.repo_ref}")

    async def catalog(self, host: str) -> list[str]:
        return await self._paginate(host, "/v2/_catalog?n=1000", ["registry:catalog:*"],
                                    "repositories", f"repositories of {host}")

    async def referrers(self, ref: Reference, digest: str,
                        artifact_type: str | None = None) -> tuple[list[Descriptor], str]:
        """Referrers of ``digest``: (descriptors, "api" or "tags")."""
        path = f"/v2/{ref.repository}/referrers/{digest}"
        params = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
        resp = await self.transport.request("GET", ref.host, path + params,
                                            scopes=self._pull(ref))
        if resp.status == 200 and content_type(resp) in (mt.OCI_INDEX, "application/json"):
            descriptors: list[Descriptor] = []
            filtered = "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
            async with resp:
                try:
                    data = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ClientError, ValueError):
                    raise ClientError(f"referrers of {digest}: invalid JSON") from None
                link = resp.links.get("next")
            descriptors.extend(Descriptor.from_dict(d, "referrers")
                               for d in (data or {}).get("manifests") or [])
            pages = 0
            while link and pages < 100:
                pages += 1
                url = urljoin(self.transport.base_url(ref.host) + "/", str(link.get("url")))
                more = await self.transport.request("GET", ref.host, url, scopes=self._pull(ref))
                if more.status != 200:
                    raise await error_from_response(more, f"referrers of {digest}")
                async with more:
                    data = await more.json(content_type=None)
                    link = more.links.get("next")
                descriptors.extend(Descriptor.from_dict(d, "referrers")
                                   for d in (data or {}).get("manifests") or [])
            if artifact_type and not filtered:
                descriptors = [d for d in descriptors if d.artifact_type == artifact_type]
            return descriptors, "api"
        if resp.status in (401, 403):
            raise await error_from_response(resp, f"referrers of {digest}")
        resp.release()
        # No referrers API: the tag schema `<alg>-<hex>` holds an index of the referrers.
        try:
            index = await self.get_manifest(ref, referrers_tag(digest), accept=mt.OCI_INDEX)
        except NotFound:
            return [], "tags"
        descriptors = index.children() if index.is_index else []
        if artifact_type:
            descriptors = [d for d in descriptors if d.artifact_type == artifact_type]
        return descriptors, "tags"

    async def add_to_referrers_tag(self, ref: Reference, subject_digest: str,
                                   referrer: Descriptor) -> None:
        """Maintain the ``<alg>-<hex>`` tag-schema index for a registry without the API."""
        tag = referrers_tag(subject_digest)
        try:
            current = await self.get_manifest(ref, tag, accept=mt.OCI_INDEX)
            existing = current.json.get("manifests") or [] if current.is_index else []
        except NotFound:
            existing = []
        if any(isinstance(d, dict) and d.get("digest") == referrer.digest for d in existing):
            return
        entry = referrer.to_dict()
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                 "manifests": [*existing, entry]}
        data = json.dumps(index, separators=(",", ":")).encode()
        await self.put_manifest(ref, tag, data, mt.OCI_INDEX)

