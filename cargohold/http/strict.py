"""One meaning for every request: a query parameter the API reads once may not appear twice.

Picking the first or last of two values would let a proxy or an authorisation layer that reads
the other one see a different request than the handler does.
"""

from __future__ import annotations

from aiohttp import web

from cargohold.wire.errors import ErrorCode, RegistryError

# Each single-valued parameter, and the code its endpoint uses for an invalid value.
SINGLE_VALUED: dict[str, ErrorCode] = {
    "n": ErrorCode.PAGINATION_NUMBER_INVALID,
    "last": ErrorCode.UNSUPPORTED,
    "digest": ErrorCode.DIGEST_INVALID,
    "mount": ErrorCode.DIGEST_INVALID,
    "from": ErrorCode.NAME_INVALID,
    "artifactType": ErrorCode.UNSUPPORTED,
    "X-Cargohold-Expires": ErrorCode.UNSUPPORTED,
    "X-Cargohold-Signature": ErrorCode.UNSUPPORTED,
}


def check_single_valued(request: web.Request) -> None:
    """Refuse a request naming a single-valued `/v2` query parameter more than once."""
    if not request.path.startswith("/v2") or not request.query_string:
        return
    query = request.query
    for name, code in SINGLE_VALUED.items():
        if len(query.getall(name, ())) > 1:
            raise RegistryError(code, f"query parameter {name!r} is given more than once",
                                {"parameter": name, "values": query.getall(name)},
                                status=400)


@web.middleware
async def single_valued_query_middleware(request: web.Request,
                                         handler: web.Handler) -> web.StreamResponse:
    check_single_valued(request)
    return await handler(request)
