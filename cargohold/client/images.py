"""``cargohold images``: image details through an ECR-compatible API, else through /v2.

A registry that serves Amazon ECR's JSON API (``POST /`` with ``X-Amz-Target:
AmazonEC2ContainerRegistry_V20150921.DescribeImages``) is asked with the AWS SDK's ``ecr``
client (botocore, the engine of boto3), pointed at the registry's URL and signed with the
access key that ``login`` stored (unsigned without one). When there is no such API, the same
details are assembled from /v2: tags, their manifests, and for untagged images the children
of indexes and the referrers of what is tagged (tag-schema ``sha256-<hex>`` tags are
bookkeeping and not listed). /v2 knows no push times.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from typing import Any

from cargohold.client.content import Manifest
from cargohold.client.errors import AuthError, ClientError, NotFound
from cargohold.client.reference import Reference
from cargohold.client.registry import Registry

ECR_ERRORS = {"RepositoryNotFoundException", "ImageNotFoundException",
              "InvalidParameterException", "AccessDeniedException", "ServerException",
              "LimitExceededException", "ValidationException", "ThrottlingException",
              "UnrecognizedClientException", "InvalidSignatureException",
              "ExpiredTokenException", "MissingAuthenticationTokenException"}
AUTH_ERRORS = {"MissingAuthenticationTokenException", "UnrecognizedClientException",
               "AccessDeniedException", "InvalidSignatureException"}
MAX_DISCOVERED = 10_000
REFERRERS_TAG = re.compile(r"^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{121})$")


class NoEcrApi(Exception):
    """The registry does not speak the ECR API (fall back to /v2)."""


def ecr_describe_images(endpoint: str, repository: str, tag_status: str,
                        username: str = "", password: str = "", verify: bool = True,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
    try:
        import botocore.exceptions
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError as exc:
        raise NoEcrApi("botocore is not installed") from exc
    options: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": timeout * 3,
                               "retries": {"total_max_attempts": 1}}
    key_id = username or os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = password or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not (key_id and secret):
        options["signature_version"] = UNSIGNED
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = botocore.session.get_session()
    client = session.create_client(
        "ecr", endpoint_url=endpoint, region_name=region, verify=verify,
        aws_access_key_id=key_id or None, aws_secret_access_key=secret or None,
        config=Config(**options))
    details: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"repositoryName": repository,
                              "filter": {"tagStatus": tag_status.upper()}, "maxResults": 1000}
    pages = 0
    while True:
        pages += 1
        try:
            page = client.describe_images(**kwargs)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in AUTH_ERRORS and options.get("signature_version") is not None:
                # Unsigned (no stored access key): the API exists but wants credentials;
                # /v2 may still allow anonymous reads.
                raise NoEcrApi(f"the ECR API wants credentials ({code})") from None
            if code in ECR_ERRORS:
                message = str(error.get("Message", "")) or code
                if code == "RepositoryNotFoundException":
                    raise NotFound(f"repository {repository} not found ({message})", 404,
                                   code) from None
                if code in ("AccessDeniedException", "UnrecognizedClientException",
                            "InvalidSignatureException", "MissingAuthenticationTokenException"):
                    raise AuthError(f"ECR API of {endpoint}: {code}: {message}", 403,
                                    code) from None
                raise ClientError(f"ECR API of {endpoint}: {code}: {message}") from None
            raise NoEcrApi(code or "no ECR API") from None
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise NoEcrApi(str(exc)) from None
        headers = (page.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        if "imageDetails" not in page or "json" not in headers.get("content-type", ""):
            # Something answered POST / (a web page, an empty 200): not the ECR API.
            raise NoEcrApi("the answer to DescribeImages was not an ECR response")
        for detail in page.get("imageDetails") or []:
            pushed = detail.get("imagePushedAt")
            if isinstance(pushed, dt.datetime):
                detail["imagePushedAt"] = pushed.isoformat()
            details.append(detail)
        token = page.get("nextToken")
        if not token or pages > 1000:
            break
        kwargs["nextToken"] = token
    return details


async def v2_describe_images(registry: Registry, ref: Reference, tag_status: str
                             ) -> list[dict[str, Any]]:
    """ECR-shaped image details assembled from /v2 (``imagePushedAt`` is unknown there)."""
    repo = ref.with_tag(None)
    # Tags of the referrers tag schema (`sha256-<hex>`) are bookkeeping, not images.
    tags = [t for t in await registry.list_tags(repo) if not REFERRERS_TAG.match(t)]
    by_digest: dict[str, dict[str, Any]] = {}
    manifests: dict[str, Manifest] = {}

    async def load(reference: str) -> Manifest | None:
        try:
            return await registry.get_manifest(repo, reference)
        except NotFound:
            return None

    semaphore = asyncio.Semaphore(4)

    async def load_tag(tag: str) -> tuple[str, Manifest | None]:
        async with semaphore:
            return tag, await load(tag)

    for tag, manifest in await asyncio.gather(*(load_tag(t) for t in tags)):
        if manifest is None:
            continue
        manifests[manifest.digest] = manifest
        entry = by_digest.setdefault(manifest.digest, _detail(ref, manifest))
        entry.setdefault("imageTags", []).append(tag)
    if tag_status in ("untagged", "any"):
        queue = list(manifests.values())
        while queue and len(manifests) < MAX_DISCOVERED:
            manifest = queue.pop()
            related = [c.digest for c in manifest.children()]
            referrers, _ = await registry.referrers(repo, manifest.digest)
            related += [r.digest for r in referrers]
            for digest in related:
                if digest in manifests:
                    continue
                child = await load(digest)
                if child is None:
                    continue
                manifests[digest] = child
                by_digest.setdefault(digest, _detail(ref, child))
                queue.append(child)
    details = list(by_digest.values())
    for detail in details:
        detail["imageTags"] = sorted(detail.get("imageTags", []))
        if not detail["imageTags"]:
            del detail["imageTags"]
    if tag_status == "tagged":
        details = [d for d in details if d.get("imageTags")]
    elif tag_status == "untagged":
        details = [d for d in details if not d.get("imageTags")]
    return details


def _detail(ref: Reference, manifest: Manifest) -> dict[str, Any]:
    size = sum(b.size for b in manifest.blobs()) if not manifest.is_index else \
        sum(c.size for c in manifest.children())
    detail: dict[str, Any] = {
        "registryId": ref.host,
        "repositoryName": ref.repository,
        "imageDigest": manifest.digest,
        "imageSizeInBytes": size,
        "imageManifestMediaType": manifest.media_type,
    }
    artifact_type = manifest.artifact_type()
    if artifact_type:
        detail["artifactMediaType"] = artifact_type
    return detail
