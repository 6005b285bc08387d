"""HTTP to registries: scheme choice, TLS, redirects and the Basic/Bearer auth handshake.

A 401 answer's ``WWW-Authenticate`` challenge is followed once: Basic gets the stored
credentials, Bearer gets a token from the challenge's realm for the union of the challenge's
scope and the scope the operation needs (Docker token spec). Tokens are cached per host and
scope set, and once a host is known to want a token, the token is fetched before the request
so large bodies are not sent only to be refused. Request bodies are given as factories so a
request can be replayed after the handshake.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from cargohold import __version__
from cargohold.client.auth import (
    Challenge,
    Credentials,
    DockerConfig,
    basic_header,
    merge_scopes,
    parse_challenges,
)
from cargohold.client.errors import AuthError, ClientError, NotFound, RegistryError
from cargohold.client.reference import is_local_host

USER_AGENT = f"cargohold/{__version__}"
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 5

Body = bytes | Callable[[], Any] | None


class ConnectionLost(ClientError):
    """The connection broke mid-request (worth resuming or retrying)."""


@dataclass
class HostAuth:
    scheme: str | None = None  # "basic" | "bearer" once a challenge was seen
    realm: str = ""
    service: str = ""
    tokens: dict[tuple[str, ...], str] = field(default_factory=dict)


@dataclass
class TransportOptions:
    plain_http: bool = False
    insecure: bool = False
    config_path: str | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 300.0
    # explicit credentials per host (login verifies these before storing them)
    credentials: dict[str, Credentials] = field(default_factory=dict)


class Transport:
    def __init__(self, options: TransportOptions | None = None) -> None:
        from pathlib import Path

        self.options = options or TransportOptions()
        self.config = DockerConfig(Path(self.options.config_path)
                                   if self.options.config_path else None)
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[str, HostAuth] = {}
        self._creds: dict[str, Credentials] = dict(self.options.credentials)
        self._token_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Transport:
        ssl_ctx: ssl.SSLContext | bool = not self.options.insecure
        connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=16)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout,
                                        sock_read=self.options.read_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False,
            headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Transport used outside 'async with'")
        return self._session

    # ------------------------------------------------------------------ addressing

    def scheme(self, host: str) -> str:
        return "http" if self.options.plain_http or is_local_host(host) else "https"

    def base_url(self, host: str) -> str:
        return f"{self.scheme(host)}://{host}"

    def url(self, host: str, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url(host) + "/", path)

    def credentials(self, host: str) -> Credentials:
        if host not in self._creds:
            self._creds[host] = self.config.get(host)
        return self._creds[host]

    # ------------------------------------------------------------------ requests

    async def request(self, method: str, host: str, path: str, *, scopes: list[str] | None = None,
                      headers: dict[str, str] | None = None, body: Body = None,
                      params: dict[str, str] | list[tuple[str, str]] | None = None,
                      follow_redirects: bool = True) -> aiohttp.ClientResponse:
        """Send a request with auth; the caller reads and releases the response."""
        scopes = scopes or []
        url = self.url(host, path)
        state = self._auth.setdefault(host, HostAuth())
        creds = self.credentials(host)
        retried = False
        while True:
            hdrs = dict(headers or {})
            authorization = await self._authorization(host, state, scopes, creds)
            if authorization:
                hdrs["Authorization"] = authorization
            data = body() if callable(body) else body
            resp = await self._send(method, url, hdrs, data, params, follow_redirects, host)
            if resp.status != 401 or retried:
                return resp
            challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
            bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
            basic = next((c for c in challenges if c.scheme == "basic"), None)
            if bearer is not None:
                resp.release()
                state.scheme, state.realm, state.service = "bearer", bearer.realm, bearer.service
                wanted = merge_scopes(scopes, bearer.scopes)
                token = await self._fetch_token(host, state, wanted, creds, bearer)
                state.tokens[tuple(scopes)] = token
            elif basic is not None and not creds.empty and not (
                    authorization or "").startswith("Basic "):
                resp.release()
                state.scheme = "basic"
            else:
                return resp
            retried = True

    async def _authorization(self, host: str, state: HostAuth, scopes: list[str],
                             creds: Credentials) -> str | None:
        if state.scheme == "basic":
            return basic_header(creds) if not creds.empty else None
        if state.scheme == "bearer":
            key = tuple(scopes)
            token = state.tokens.get(key)
            if token is None and state.realm:
                lock = self._token_locks.setdefault(host, asyncio.Lock())
                async with lock:
                    token = state.tokens.get(key)
                    if token is None:
                        token = await self._fetch_token(host, state, scopes, creds, None)
                        state.tokens[key] = token
            return f"Bearer {token}" if token else None
        if creds.registry_token:
            return f"Bearer {creds.registry_token}"
        return None

    async def _fetch_token(self, host: str, state: HostAuth, scopes: list[str],
                           creds: Credentials, challenge: Challenge | None) -> str:
        realm = state.realm
        if not realm.startswith(("http://", "https://")):
            raise AuthError(f"{host} sent a Bearer challenge with an unusable realm {realm!r}",
                            401)
        params: list[tuple[str, str]] = []
        if state.service:
            params.append(("service", state.service))
        headers: dict[str, str] = {}
        try:
            if creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "cargohold", "access_type": "offline"}
                if state.service:
                    form["service"] = state.service
                if scopes:
                    form["scope"] = " ".join(scopes)
                resp = await self.session.post(realm, data=form, headers=headers,
                                                allow_redirects=True)
            else:
                params.extend(("scope", s) for s in scopes)
                if creds.username or creds.password:
                    headers["Authorization"] = basic_header(creds)
                resp = await self.session.get(realm, params=params, headers=headers,
                                               allow_redirects=True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ClientError(f"cannot reach the token service {realm} for {host}: "
                              f"{describe_exception(exc)}") from None
        async with resp:
            text = await resp.text(errors="replace")
            if resp.status in (401, 403):
                hint = ("credentials rejected" if not creds.empty
                        else f"anonymous access refused; run: cargohold login {host}")
                raise AuthError(f"authentication failed for {host}: {hint}", resp.status)
            if resp.status != 200:
                raise AuthError(f"token service {realm} answered {resp.status} for {host}",
                                resp.status)
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                raise AuthError(f"token service {realm} returned invalid JSON", 200) from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise AuthError(f"token service {realm} returned no token", 200)
        return str(token)

    async def _send(self, method: str, url: str, headers: dict[str, str], data: Any,
                    params: Any, follow: bool, host: str) -> aiohttp.ClientResponse:
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = await self.session.request(method, url, headers=headers, data=data,
                                                   params=params, allow_redirects=False)
            except aiohttp.ClientConnectorCertificateError as exc:
                raise ClientError(
                    f"TLS certificate of {host} not trusted ({describe_exception(exc)}); use "
                    "--insecure to skip verification or --plain-http for HTTP") from None
            except aiohttp.ClientSSLError as exc:
                raise ClientError(
                    f"TLS handshake with {host} failed ({describe_exception(exc)}); if the "
                    "registry speaks plain HTTP, use --plain-http") from None
            except aiohttp.ClientConnectorError as exc:
                raise ClientError(f"cannot connect to {host}: {describe_exception(exc)}"
                                  ) from None
            except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                    aiohttp.ClientPayloadError) as exc:
                raise ConnectionLost(f"connection to {host} lost during {method}: "
                                     f"{describe_exception(exc)}") from None
            except aiohttp.ClientError as exc:
                raise ClientError(f"{method} {url} failed: {describe_exception(exc)}") from None
            if not follow or resp.status not in (301, 302, 303, 307, 308) \
                    or "Location" not in resp.headers:
                return resp
            location = urljoin(url, resp.headers["Location"])
            resp.release()
            if urlsplit(location).netloc != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303:
                method, data = "GET", None
            url, params = location, None
        raise ClientError(f"too many redirects from {host}")


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if error is not None and error.errno:
            return os.strerror(error.errno).lower()
        return str(error.strerror or error) if error is not None else str(exc)
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


async def error_from_response(resp: aiohttp.ClientResponse, what: str) -> RegistryError:
    """Turn a non-success response into a one-line error (and release it)."""
    try:
        raw = await resp.content.read(MAX_ERROR_BODY)
    except (TimeoutError, aiohttp.ClientError):
        raw = b""
    finally:
        resp.release()
    code, message = None, ""
    try:
        data = json.loads(raw)
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors and isinstance(errors, list) and isinstance(errors[0], dict):
            code = str(errors[0].get("code") or "") or None
            message = str(errors[0].get("message") or "")
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    status = resp.status
    detail = f"{code}: {message}" if code and message else (code or message or resp.reason or "")
    host = resp.url.host or ""
    if status == 401:
        return AuthError(f"{what}: authentication required ({detail}); run: cargohold login "
                         f"{host}{':' + str(resp.url.port) if resp.url.port else ''}", status,
                         code)
    if status == 403:
        return AuthError(f"{what}: access denied ({detail})", status, code)
    if status == 404:
        return NotFound(f"{what}: not found ({detail})" if detail else f"{what}: not found",
                        status, code)
    return RegistryError(f"{what}: registry answered {status} ({detail})", status, code)


async def iter_body(resp: aiohttp.ClientResponse, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    async for data in resp.content.iter_chunked(chunk):
        yield data
