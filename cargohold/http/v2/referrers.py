"""The referrers API (end-12): an OCI image index of a subject's referrers, a page at a time.

A page holds up to 1,000 descriptors; when more exist, `Link: <…>; rel="next"` names the next
page (the spec's pagination of referrers), keeping the artifactType filter.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from cargohold.http.keys import STORAGE_KEY
from cargohold.http.v2 import cache
from cargohold.http.v2.common import repository_name
from cargohold.services.referrers import ReferrerService, image_index
from cargohold.services.repositories import decode_token, encode_token
from cargohold.wire.ecr import EcrError
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.manifest import OCI_INDEX, is_media_type

NEXT_PARAM = "next"
MAX_ECHOED = 300  # of an invalid value, in an error's detail


async def referrers(request: web.Request) -> web.Response:
    name = repository_name(request)
    artifact_type = request.query.get("artifactType") or None
    if artifact_type is not None and not is_media_type(artifact_type):
        raise RegistryError(ErrorCode.UNSUPPORTED, "artifactType is not a valid media type",
                            {"artifactType": artifact_type[:MAX_ECHOED]})
    try:
        cursor = decode_token(request.query.get(NEXT_PARAM), int)
    except EcrError:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, "invalid page cursor",
                            {NEXT_PARAM: request.query.get(NEXT_PARAM)}) from None
    headers = {"Content-Type": OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if cursor is None:
        upstream = await cache.upstream_referrers(request, name, request.match_info["digest"],
                                                  artifact_type)
        if upstream is not None:
            return web.Response(status=200, body=json.dumps(upstream).encode(),
                                headers=headers)
    service = ReferrerService(request.app[STORAGE_KEY])
    page = await service.page(name, request.match_info["digest"],
                              [artifact_type] if artifact_type else None,
                              cursor[0] if cursor else None)
    records = page.records if page is not None else []
    if page is not None and page.next_cursor is not None:
        query = {"artifactType": artifact_type} if artifact_type else {}
        query[NEXT_PARAM] = encode_token([page.next_cursor])
        headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    return web.Response(status=200, body=json.dumps(image_index(records)).encode(),
                        headers=headers)
