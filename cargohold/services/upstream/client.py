"""An OCI distribution client for upstream registries: anonymous, Basic, or the Docker token
flow, whichever the upstream's challenge asks for; tokens are cached per repository until they
expire. Failures become `UpstreamError`, which names the upstream."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from cargohold.services.upstream.rules import UpstreamCredential
from cargohold.wire.errors import ErrorCode, RegistryError

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.artifact.manifest.v1+json",
])
_PARAM = re.compile(r'(\w+)="([^"]*)"')
TOKEN_SAFETY = 10.0  # renew a token this many seconds before it expires


class UpstreamError(Exception):
    """The upstream refused, failed or could not be reached (status None)."""

    def __init__(self, upstream: str, status: int | None, message: str,
                 retry_after: str | None = None) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def registry_error(self, missing: ErrorCode) -> RegistryError:
        """The /v2 error a client sees; `missing` is the code for a 404."""
        text = f"upstream {self.upstream}: {self.message}"
        detail = {"upstream": self.upstream, "status": self.status}
        if self.status == 404:
            return RegistryError(missing, text, detail)
        if self.status in (401, 403):
            return RegistryError(ErrorCode.DENIED, text + " (check the pull-through cache "
                                 "rule's credential)", detail)
        if self.status == 429:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return RegistryError(ErrorCode.TOOMANYREQUESTS, text, detail, headers=headers)
        return RegistryError(ErrorCode.UNAVAILABLE, text, detail, status=502)


@dataclass(slots=True)
class _Token:
    header: str
    expires: float


def _token_key(repository: str | None, also_pull: str | None) -> str:
    """Tokens are cached per scope: the repository, plus a mount's source when there is one."""
    return f"{repository or ''} {also_pull}" if also_pull else repository or ""


class UpstreamClient:
    """Requests to one upstream registry with one (optional) credential."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 credential: UpstreamCredential | None, actions: str = "pull") -> None:
        self.session = session
        self.base_url = base_url
        self.credential = credential
        self.actions = actions  # token scope: "pull" for a cache, "pull,push" to replicate
        self._auth: dict[str, _Token] = {}
        self._lock = asyncio.Lock()

    def _basic(self) -> aiohttp.BasicAuth | None:
        if self.credential is None:
            return None
        return aiohttp.BasicAuth(self.credential.username, self.credential.password)

    def error(self, status: int | None, message: str,
              retry_after: str | None = None) -> UpstreamError:
        return UpstreamError(self.base_url, status, message, retry_after)

    async def request(self, method: str, path: str, repository: str | None,
                      headers: dict[str, str] | None = None, data: Any = None,
                      also_pull: str | None = None) -> aiohttp.ClientResponse:
        """Send a request, answering one auth challenge; the caller releases the response.
        Any status of 400 and above raises UpstreamError. `path` may be an absolute URL (an
        upload's Location). A streamed `data` cannot be sent twice: authenticate first.
        `also_pull` names a second repository the token must let us pull (a mount's source)."""
        scope = _token_key(repository, also_pull)
        response = await self._send(method, path, scope, headers, data)
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            response.release()
            await self._authenticate(challenge, repository, also_pull)
            response = await self._send(method, path, scope, headers, data)
        if response.status >= 400:
            status = response.status
            reason = response.reason or ""
            retry_after = response.headers.get("Retry-After")
            response.release()
            raise self.refusal(method, path, status, reason, retry_after)
        return response

    def refusal(self, method: str, path: str, status: int, reason: str,
                retry_after: str | None) -> UpstreamError:
        """The error for an answer of 400 and above."""
        return self.error(status, f"{method} {path} answered {status} {reason}".strip(),
                          retry_after)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def authorization(self, repository: str | None) -> str | None:
        """The Authorization header a request for `repository` carries now, if any (for a
        transfer made outside the aiohttp session, see `blobreceive`)."""
        token = self._auth.get(_token_key(repository, None))
        return token.header if token is not None and token.expires > time.monotonic() else None

    async def authenticate(self, challenge: str, repository: str | None) -> None:
        """Answer a 401's WWW-Authenticate challenge for `repository` (cached as usual)."""
        await self._authenticate(challenge, repository)

    async def _send(self, method: str, path: str, scope: str, headers: dict[str, str] | None,
                    data: Any = None) -> aiohttp.ClientResponse:
        all_headers = dict(headers or {})
        token = self._auth.get(scope)
        if token is not None and token.expires > time.monotonic():
            all_headers["Authorization"] = token.header
        url = self.url(path)
        try:
            return await self.session.request(method, url, headers=all_headers, data=data,
                                              allow_redirects=True)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self.error(None, f"unreachable ({type(exc).__name__}: {exc})") from None

    async def _authenticate(self, challenge: str, repository: str | None,
                            also_pull: str | None = None) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        scope = _token_key(repository, also_pull)
        if scheme == "basic":
            basic = self._basic()
            if basic is None:
                raise self.error(401, "asks for credentials and the rule has none")
            self._auth[scope] = _Token(basic.encode(), float("inf"))
            return
        if scheme != "bearer":
            raise self.error(401, f"asks for unsupported authentication {challenge!r}")
        params = dict(_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            raise self.error(401, "sent a Bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        if repository:
            query.append(("scope", f"repository:{repository}:{self.actions}"))
        if also_pull:
            query.append(("scope", f"repository:{also_pull}:pull"))
        try:
            async with self.session.get(realm, params=query, auth=self._basic()) as response:
                if response.status != 200:
                    raise self.error(response.status,
                                     f"token endpoint answered {response.status}")
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise self.error(None, f"token endpoint failed ({type(exc).__name__}: {exc})"
                             ) from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise self.error(401, "token endpoint sent no token")
        lifetime = body.get("expires_in", 60)
        lifetime = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 60
        self._auth[scope] = _Token(f"Bearer {token}",
                                   time.monotonic() + max(lifetime - TOKEN_SAFETY, 1))

    async def ping(self) -> None:
        """GET /v2/ with authentication: raises UpstreamError unless the upstream answers."""
        response = await self.request("GET", "/v2/", None)
        response.release()
