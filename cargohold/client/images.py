"""``cargohold images``: image details through an ECR-compatible API, else through /v2.

A registry that serves Amazon ECR's JSON API (``POST /`` with ``X-Amz-Target:
AmazonEC2ContainerRegistry_V20150921.DescribeImages``) is asked with the AWS SDK's ``ecr``
client (botocore, the engine of boto3), pointed at the registry's URL and signed with the AWS
credentials of botocore's standard chain (unsigned without any). The Docker login is never used
as a SigV4 key. When there is no such API, or it refuses us, the same details are assembled
from /v2: tags, their manifests, and for untagged images the children of indexes and the
referrers of what is tagged (tag-schema ``sha256-<hex>`` tags are bookkeeping and not listed).
/v2 knows no push times.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from cargohold.client.content import Manifest
from cargohold.client.errors import ClientError, NotFound
from cargohold.client.reference import Reference
from cargohold.client.registry import Registry

ECR_ERRORS = {"RepositoryNotFoundException", "ImageNotFoundException",
              "InvalidParameterException", "AccessDeniedException", "ServerException",
              "LimitExceededException", "ValidationException", "ThrottlingException",
              "UnrecognizedClientException", "InvalidSignatureException",
              "ExpiredTokenException", "MissingAuthenticationTokenException"}
AUTH_ERRORS = {"MissingAuthenticationTokenException", "UnrecognizedClientException",
               "AccessDeniedException", "InvalidSignatureException", "ExpiredTokenException"}
MAX_DISCOVERED = 10_000
REFERRERS_TAG = re.compile(r"^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{121})$")


class NoEcrApi(Exception):
    """The registry does not speak the ECR API (fall back to /v2)."""


class EcrCredentialsRefused(NoEcrApi):
    """The ECR API is there but wants AWS credentials we do not have, or refused ours; /v2
    with the registry login may still answer."""


def ecr_client(endpoint: str, verify: bool, timeout: float) -> tuple[Any, bool]:
    """A botocore ``ecr`` client for ``endpoint`` and whether it signs its requests.

    The credentials come from botocore's standard chain (the environment,
    ``AWS_SHARED_CREDENTIALS_FILE``, the profile in ``~/.aws``, ...), never from the Docker
    login: a registry password is not a SigV4 secret. Without credentials the client sends
    unsigned requests, which a registry may still answer.
    """
    import botocore.exceptions
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    session = botocore.session.get_session()
    options: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": timeout * 3,
                               "retries": {"total_max_attempts": 1}}
    try:
        signed = session.get_credentials() is not None
        region = session.get_config_variable("region")
    except botocore.exceptions.BotoCoreError as exc:  # a broken profile or config file
        raise EcrCredentialsRefused(f"no usable AWS credentials ({exc})") from None
    if not signed:
        options["signature_version"] = UNSIGNED
    client = session.create_client("ecr", endpoint_url=endpoint,
                                   region_name=region or "us-east-1", verify=verify,
                                   config=Config(**options))
    return client, signed


def ecr_describe_images(endpoint: str, repository: str, tag_status: str, verify: bool = True,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
    """DescribeImages through the ECR API, all pages. Raises ``NoEcrApi`` when there is no
    such API and ``EcrCredentialsRefused`` when it wants other credentials."""
    import botocore.exceptions

    client, signed = ecr_client(endpoint, verify, timeout)
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
            message = str(error.get("Message", "")) or code
            if code in AUTH_ERRORS:
                if signed:
                    raise EcrCredentialsRefused(f"the AWS credentials were refused ({code}: "
                                                f"{message})") from None
                raise EcrCredentialsRefused(
                    f"it wants AWS credentials ({code}) and none were found (environment, "
                    "AWS_SHARED_CREDENTIALS_FILE, ~/.aws)") from None
            if code in ECR_ERRORS:
                if code == "RepositoryNotFoundException":
                    raise NotFound(f"repository {repository} not found ({message})", 404,
                                   code) from None
                raise ClientError(f"ECR API of {endpoint}: {code}: {message}") from None
            raise NoEcrApi(code or "no ECR API") from None
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise NoEcrApi(str(exc)) from None
        headers = (page.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        if "imageDetails" not in page or "json" not in headers.get("content-type", ""):
            # Something answered POST / (a web page, an empty 200): not the ECR API.
            raise NoEcrApi("the answer to DescribeImages was not an ECR response")
        details.extend(page.get("imageDetails") or [])
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
