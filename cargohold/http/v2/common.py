"""Request parsing shared by the `/v2` handlers: names, pagination, body streams."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from aiohttp import web

from cargohold.services.blobs import ChunkRange
from cargohold.wire.errors import ErrorCode, RegistryError
from cargohold.wire.names import validate_name

BODY_CHUNK = 1 << 20
MAX_PAGE = 10_000
_CONTENT_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")  # the spec's exact grammar



def repository_name(request: web.Request) -> str:
    """The repository of the path. aiohttp decodes `%2F` in a path variable into `/`; a name
    spelled that way would alias another repository, so it is refused."""
    name = request.match_info["name"]
    # path_safe keeps %2F encoded: the name must appear in it verbatim.
    if not request.rel_url.path_safe.startswith(f"/v2/{name}/"):
        raise RegistryError(ErrorCode.NAME_INVALID, "a repository name may not contain an "
                            "encoded slash or percent sign (%2F, %25)", {"name": name})
    return validate_name(name)


async def body_stream(request: web.Request) -> AsyncIterator[bytes]:
    """The request body, piece by piece as the parser received it. `iter_chunked` would join
    the pieces into BODY_CHUNK-sized bytes first: one more copy of every byte pushed, about
    a tenth of a large push's server CPU (bench/PROFILE.md, session 6). The reader may still
    buffer up to twice BODY_CHUNK before it pauses the socket."""
    content = request.content
    set_read_chunk_size = getattr(content, "set_read_chunk_size", None)  # aiohttp ≥ 3.14
    if set_read_chunk_size is not None:
        set_read_chunk_size(BODY_CHUNK)
    async for piece, _ in content.iter_chunks():
        if piece:
            yield piece


def content_length(request: web.Request) -> int | None:
    return request.content_length


def chunk_range(request: web.Request) -> ChunkRange | None:
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise RegistryError(ErrorCode.RANGE_INVALID, "malformed Content-Range",
                            {"Content-Range": header})
    return ChunkRange(int(match.group(1)), int(match.group(2)))


def page_size(request: web.Request) -> int | None:
    """The `n` query parameter: None when absent, clamped to MAX_PAGE."""
    raw = request.query.get("n")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw})
    return min(int(raw), MAX_PAGE)


def paginated(request: web.Request, key: str, items: list[str], limit: int | None,
              extra: dict[str, str]) -> web.Response:
    """A JSON page of names; `items` holds up to limit+1 entries, the extra one means "more"."""
    headers: dict[str, str] = {}
    if limit is not None and len(items) > limit:
        items = items[:limit]
        query = urlencode({"n": limit, "last": items[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return web.json_response({**extra, key: items}, headers=headers)
