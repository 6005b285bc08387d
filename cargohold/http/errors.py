"""Renders every failure as the distribution spec's JSON error envelope."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from cargohold.wire.errors import ErrorCode, RegistryError

log = logging.getLogger(__name__)
API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


def error_response(error: RegistryError) -> web.Response:
    body = json.dumps(error.body()).encode()
    return web.Response(status=error.status, body=body, content_type="application/json",
                        headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RegistryError as exc:
        return error_response(exc)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ",".join(sorted(exc.allowed_methods))
        return error_response(RegistryError(ErrorCode.UNSUPPORTED, "method not allowed",
                                            {"method": exc.method}, status=405,
                                            headers={"Allow": allowed}))
    except web.HTTPNotFound:
        return error_response(RegistryError(ErrorCode.NAME_UNKNOWN, "no such endpoint",
                                            {"path": request.path}, status=404))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(RegistryError(ErrorCode.UNAVAILABLE, "internal server error",
                                            status=500))
    return response


async def add_api_version(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, streamed ones included, names the API version."""
    response.headers.update(API_VERSION_HEADER)
