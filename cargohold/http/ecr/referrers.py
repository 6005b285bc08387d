"""ECR ListImageReferrers: the referrers API's data, ECR-shaped, with nextToken paging.

ECR documents that the caller needs `ecr:BatchGetImage` for it, as for the `/v2` referrers.
"""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.protocol import Call, OperationSpec, named_repository
from cargohold.http.keys import STORAGE_KEY
from cargohold.services.actions import BATCH_GET_IMAGE
from cargohold.services.referrers import ReferrerService, descriptor
from cargohold.services.repositories import decode_token, encode_token, not_found
from cargohold.wire.digest import parse_digest
from cargohold.wire.ecr import invalid_parameter
from cargohold.wire.errors import RegistryError

DEFAULT_RESULTS = 20
# Every artifact Cargohold stores is ACTIVE (it has no archive storage class).
_SHOWN_STATUSES = ("ACTIVE", "ANY")


async def list_image_referrers(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = params["repositoryName"]
    raw = params["subjectId"]["imageDigest"]
    try:
        subject = str(parse_digest(raw))
    except RegistryError:
        raise invalid_parameter(f"Invalid parameter at 'subjectId.imageDigest': {raw!r} is "
                                "not a digest") from None
    after = decode_token(params.get("nextToken"), int)
    filters = params.get("filter", {})
    artifact_types = filters.get("artifactTypes") or None
    service = ReferrerService(call.request.app[STORAGE_KEY])
    page = await service.page(name, subject, artifact_types, after[0] if after else None,
                              params.get("maxResults", DEFAULT_RESULTS))
    if page is None:
        raise not_found(name)
    if filters.get("artifactStatus", "ACTIVE") not in _SHOWN_STATUSES:
        return {"referrers": []}
    result: dict[str, Any] = {"referrers": [
        {**descriptor(record), "artifactStatus": "ACTIVE"} for record in page.records]}
    if page.next_cursor is not None:
        result["nextToken"] = encode_token([page.next_cursor])
    return result


REFERRERS_OPERATIONS: dict[str, OperationSpec] = {
    "ListImageReferrers": OperationSpec(list_image_referrers, named_repository,
                                        action=BATCH_GET_IMAGE),
}
