"""Identity and access over HTTP, against a SECURE Cargohold (no ``--anonymous``).

Every ``/v2`` route refuses missing, wrong, malformed, expired, forged and insufficient
credentials (401 UNAUTHORIZED with a Bearer challenge, or 403 DENIED for an authenticated caller
who is not allowed) and no refusal changes anything; policies decide who may pull, push, delete
and list; the token endpoint grants only allowed scopes; temporary and user passwords work; the
bootstrap administrator's credentials file, the server key and the audit log are checked from
the outside (files, the server log, the database file, the CLI).
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import pytest
import requests
from conftest import RegistryProcess

from cargohold.storage.secrets import ServerKeys

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CARGOHOLD_TEST_REGISTRY_URL")),
    reason="access-control tests start their own secure Cargohold server",
)

TIMEOUT = 30.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
SERVICE = "cargohold"

PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability", "ecr:ListImages"]
ISSUE_PULL_ACTIONS = PULL_ACTIONS[:3]  # the issue's definition of pull
PUSH_ACTIONS = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload"]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def describe(resp: requests.Response) -> str:
    body = resp.content[:1500].decode(errors="replace")
    return (f"{resp.request.method} {resp.url} -> {resp.status_code}\n"
            f"headers: {dict(resp.headers)}\nbody: {body}")


def error_codes(resp: requests.Response) -> list[str]:
    return [e.get("code") for e in resp.json().get("errors", [])]


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


def deny(actions: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": actions, "Resource": resource}


def repo_arn(name: str) -> str:
    return f"arn:aws:ecr:*:*:repository/{name}"


@dataclass
class Key:
    user: str
    id: str
    secret: str

    @property
    def basic(self) -> dict[str, str]:
        return basic(self.id, self.secret)


@dataclass
class Image:
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(nonce: str) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "nonce": nonce}, sort_keys=True).encode()
    layer = f"layer {nonce} ".encode() * 40
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    return Image(config, layer, manifest)


# --------------------------------------------------------------------------------------------
# The secure registry under test, with its users, repositories and credentials
# --------------------------------------------------------------------------------------------

@dataclass
class Secure:
    server: RegistryProcess
    http: requests.Session
    admin: Key
    keys: ServerKeys
    images: dict[str, Image] = field(default_factory=dict)
    users: dict[str, Key] = field(default_factory=dict)
    upload_id: str = ""
    _cache: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.url + path
        return self.http.request(method, url, headers=headers or {}, timeout=TIMEOUT,
                                 allow_redirects=False, **kwargs)

    def token(self, headers: dict[str, str] | None, *scopes: str,
              service: str = SERVICE) -> requests.Response:
        params: list[tuple[str, str]] = [("service", service)]
        params += [("scope", scope) for scope in scopes]
        return self.request("GET", "/v2/token", headers, params=params)

    def token_for(self, headers: dict[str, str] | None, *scopes: str) -> str:
        resp = self.token(headers, *scopes)
        assert resp.status_code == 200, describe(resp)
        body = resp.json()
        assert body["token"] == body["access_token"]
        return str(body["token"])

    def cached_token(self, name: str, headers: dict[str, str] | None, *scopes: str) -> str:
        if name not in self._cache:
            self._cache[name] = self.token_for(headers, *scopes)
        return self._cache[name]

    # -- pushing as a given caller -------------------------------------------------------

    def push_blob(self, repo: str, data: bytes, headers: dict[str, str]) -> requests.Response:
        return self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}",
                            headers={**headers, "Content-Type": "application/octet-stream"},
                            data=data)

    def push_image(self, repo: str, image: Image, tag: str,
                   headers: dict[str, str] | None = None) -> None:
        headers = headers if headers is not None else self.admin.basic
        for blob in (image.config, image.layer):
            resp = self.push_blob(repo, blob, headers)
            assert resp.status_code == 201, describe(resp)
        resp = self.request("PUT", f"/v2/{repo}/manifests/{tag}", data=image.manifest,
                            headers={**headers, "Content-Type": OCI_MANIFEST})
        assert resp.status_code == 201, describe(resp)

    # -- the CLI -------------------------------------------------------------------------

    def cli(self, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.data_dir, *args, stdin=stdin, check=check)

    def create_user(self, name: str, *policies: str, password: str | None = None) -> Key:
        args = ["admin", "users", "create", name]
        if password is not None:
            args.append("--password-stdin")
        out = self.cli(*args, stdin=password).stdout
        key = parse_key(name, out)
        for index, document in enumerate(policies):
            self.put_policy(name, f"p{index}", document)
        self.users[name] = key
        return key

    def put_policy(self, user: str, name: str, document: str) -> None:
        path = self.data_dir.parent / f"policy-{uuid.uuid4().hex}.json"
        path.write_text(document)
        self.cli("admin", "users", "put-policy", user, name, str(path))

    def set_repository_policy(self, repo: str, document: str) -> None:
        path = self.data_dir.parent / f"repo-policy-{uuid.uuid4().hex}.json"
        path.write_text(document)
        self.cli("admin", "repository-policy", "set", repo, str(path))

    def login_password(self, key_id: str | None = None) -> str:
        args = ["login-password"] + (["--access-key-id", key_id] if key_id else [])
        return self.cli(*args).stdout.strip()

    def cached_login_password(self) -> str:
        if "login-password" not in self._cache:
            self._cache["login-password"] = self.login_password()
        return self._cache["login-password"]

    # -- forging credentials with the server key -----------------------------------------

    def forge_token(self, claims: dict[str, Any], key: bytes | None = None) -> str:
        return jwt.encode(claims, key or self.keys.token_key, algorithm="HS256")

    def forge_password(self, claims: dict[str, Any], key: bytes | None = None) -> str:
        return jwt.encode(claims, key or self.keys.password_key, algorithm="HS256")

    def token_claims(self, repo: str, actions: list[str], *, age: int = 0,
                     ttl: int = 900) -> dict[str, Any]:
        real = claims_of(self.cached_token("admin-probe", self.admin.basic))
        now = int(time.time()) - age
        return {"iss": SERVICE, "aud": SERVICE, "sub": real["sub"], "uid": real["uid"],
                "akid": real["akid"], "iat": now, "nbf": now - 5, "exp": now + ttl,
                "jti": uuid.uuid4().hex,
                "access": [{"type": "repository", "name": repo, "actions": actions}]}

    # -- state, read straight from the database and the blob directory ----------------------

    def snapshot(self) -> dict[str, Any]:
        database = self.data_dir / "metadata.db"
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        try:
            def rows(sql: str) -> list[tuple[Any, ...]]:
                return sorted(conn.execute(sql).fetchall())

            state = {
                "repositories": rows("SELECT name FROM repositories"),
                "blobs": rows("SELECT r.name, b.digest FROM repository_blobs b "
                              "JOIN repositories r ON r.id = b.repository_id"),
                "manifests": rows("SELECT r.name, m.digest FROM manifests m "
                                  "JOIN repositories r ON r.id = m.repository_id"),
                "tags": rows("SELECT r.name, t.name, m.digest FROM tags t "
                             "JOIN repositories r ON r.id = t.repository_id "
                             "JOIN manifests m ON m.id = t.manifest_id"),
                "uploads": rows("SELECT id, size FROM upload_sessions"),
                "policies": rows("SELECT repository_id, document FROM repository_policies"),
            }
        finally:
            conn.close()
        blob_root = self.data_dir / "blobs"
        state["files"] = sorted((str(p.relative_to(blob_root)), p.stat().st_size)
                                for p in blob_root.rglob("*") if p.is_file())
        return state


def run_cli(data_dir: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARGOHOLD_"))}
    result = subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir",
                             str(data_dir)], input=stdin, capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    if check:
        assert result.returncode == 0, (
            f"cargohold {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}")
    return result


def parse_key(user: str, output: str) -> Key:
    values = {}
    for line in output.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            values[name.strip()] = value.strip()
    return Key(user, values["access key id"], values["secret access key"])


def audit_events(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    out = run_cli(data_dir, "admin", "audit", "--output", "json", "--limit", "1000", *args)
    return list(json.loads(out.stdout))


def wait_for_audit(data_dir: Path, match: Callable[[dict[str, Any]], bool], *args: str,
                   timeout: float = 15.0) -> list[dict[str, Any]]:
    """Poll the audit log (the server flushes every 0.5 s) until an event matches."""
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = audit_events(data_dir, *args)
        found = [event for event in events if match(event)]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no matching audit event within {timeout}s; got:\n"
                         + json.dumps(events[:40], indent=1))


TEAM_PULL = policy(allow(PULL_ACTIONS, repo_arn("team/*")))


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    server = RegistryProcess(tmp_path_factory.mktemp("secure") / "data", anonymous=False)
    server.start()
    http = requests.Session()
    http.trust_env = False  # no proxies, no ~/.netrc credentials
    try:
        key_id, secret = server.admin_credentials
        keys = ServerKeys((server.data_dir / "server.key").read_bytes())
        setup = Secure(server, http, Key("admin", key_id, secret), keys)
        for repo in ["team/app", "team/secret", "other/app", "public/app", "public/three"]:
            image = make_image(repo)
            setup.push_image(repo, image, "v1")
            setup.images[repo] = image
        pull = policy({"Effect": "Allow", "Principal": "*", "Action": PULL_ACTIONS})
        setup.set_repository_policy("public/app", pull)
        three = policy({"Effect": "Allow", "Principal": "*", "Action": ISSUE_PULL_ACTIONS})
        setup.set_repository_policy("public/three", three)
        resp = setup.request("POST", "/v2/team/app/blobs/uploads/", setup.admin.basic)
        assert resp.status_code == 202, describe(resp)
        setup.upload_id = resp.headers["Docker-Upload-UUID"]
        setup.create_user("reader", TEAM_PULL)
        setup.create_user("denier", policy(allow("*"), deny("ecr:*", repo_arn("team/secret"))))
        setup.create_user("pwuser", TEAM_PULL, password="correct horse:battery")
        setup.create_user("nopolicy")
        yield setup
    finally:
        http.close()
        server.stop()


# --------------------------------------------------------------------------------------------
# Every route refuses bad credentials and changes nothing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    id: str
    method: str
    path: Callable[[Secure], str]
    scope: str | None  # the scope of the challenge for an anonymous caller
    body: Callable[[Secure], bytes | None] = lambda s: None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def repository(self) -> bool:
        return self.scope is not None


def _img(s: Secure) -> Image:
    return s.images["team/app"]


HIJACK = b"hijack"
ROUTES = [
    Route("base", "GET", lambda s: "/v2/", None),
    Route("base-no-slash", "GET", lambda s: "/v2", None),
    Route("catalog", "GET", lambda s: "/v2/_catalog", None),
    Route("tags", "GET", lambda s: "/v2/team/app/tags/list", "pull"),
    Route("manifest-get", "GET", lambda s: "/v2/team/app/manifests/v1", "pull"),
    Route("manifest-head", "HEAD", lambda s: "/v2/team/app/manifests/v1", "pull"),
    Route("manifest-get-digest", "GET",
          lambda s: f"/v2/team/app/manifests/{_img(s).digest}", "pull"),
    Route("manifest-put", "PUT", lambda s: "/v2/team/app/manifests/hijacked", "pull,push",
          lambda s: s.images["team/app"].manifest, {"Content-Type": OCI_MANIFEST}),
    Route("manifest-delete", "DELETE",
          lambda s: f"/v2/team/app/manifests/{_img(s).digest}", "delete"),
    Route("tag-delete", "DELETE", lambda s: "/v2/team/app/manifests/v1", "delete"),
    Route("blob-get", "GET", lambda s: f"/v2/team/app/blobs/{sha256(_img(s).layer)}", "pull"),
    Route("blob-head", "HEAD", lambda s: f"/v2/team/app/blobs/{sha256(_img(s).layer)}",
          "pull"),
    Route("blob-delete", "DELETE",
          lambda s: f"/v2/team/app/blobs/{sha256(_img(s).layer)}", "delete"),
    Route("upload-start", "POST", lambda s: "/v2/team/app/blobs/uploads/", "pull,push"),
    Route("upload-monolithic", "POST",
          lambda s: f"/v2/team/app/blobs/uploads/?digest={sha256(HIJACK)}", "pull,push",
          lambda s: HIJACK, {"Content-Type": "application/octet-stream"}),
    Route("upload-patch", "PATCH", lambda s: f"/v2/team/app/blobs/uploads/{s.upload_id}",
          "pull,push", lambda s: HIJACK,
          {"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(HIJACK) - 1}"}),
    Route("upload-put", "PUT",
          lambda s: f"/v2/team/app/blobs/uploads/{s.upload_id}?digest={sha256(HIJACK)}",
          "pull,push", lambda s: HIJACK, {"Content-Type": "application/octet-stream"}),
    Route("upload-get", "GET", lambda s: f"/v2/team/app/blobs/uploads/{s.upload_id}",
          "pull,push"),
    Route("upload-delete", "DELETE", lambda s: f"/v2/team/app/blobs/uploads/{s.upload_id}",
          "pull,push"),
    Route("mount", "POST", lambda s: ("/v2/team/app/blobs/uploads/?mount="
                                      f"{sha256(s.images['other/app'].layer)}&from=other/app"),
          "pull,push"),
    Route("referrers", "GET", lambda s: f"/v2/team/app/referrers/{_img(s).digest}", "pull"),
]


def send(secure: Secure, route: Route, headers: dict[str, str] | None) -> requests.Response:
    return secure.request(route.method, route.path(secure),
                          {**route.headers, **(headers or {})}, data=route.body(secure))


def expired_password(s: Secure) -> dict[str, str]:
    claims = {"k": s.admin.id, "exp": int(time.time()) - 60, "p": "registry-password"}
    return basic("AWS", s.forge_password(claims))


def foreign_password(s: Secure) -> dict[str, str]:
    claims = {"k": s.admin.id, "exp": int(time.time()) + 3600, "p": "registry-password"}
    return basic("AWS", s.forge_password(claims, key=os.urandom(32)))


def expired_token(s: Secure) -> dict[str, str]:
    claims = s.token_claims("team/app", ["pull", "push", "delete"], age=3600)
    return bearer(s.forge_token(claims))


def foreign_token(s: Secure) -> dict[str, str]:
    claims = s.token_claims("team/app", ["pull", "push", "delete"])
    return bearer(s.forge_token(claims, key=os.urandom(32)))


def unsigned_token(s: Secure) -> dict[str, str]:
    claims = s.token_claims("team/app", ["pull", "push", "delete"])
    return bearer(jwt.encode(claims, None, algorithm="none"))


def flipped_signature(s: Secure) -> dict[str, str]:
    token = s.cached_token("admin-team-pull", s.admin.basic, "repository:team/app:pull")
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return bearer(f"{head}.{payload}.{flipped}")


def changed_access(s: Secure) -> dict[str, str]:
    token = s.cached_token("admin-team-pull", s.admin.basic, "repository:team/app:pull")
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"] = [{"type": "repository", "name": "team/app",
                         "actions": ["pull", "push", "delete"]}]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return bearer(f"{head}.{forged}.{signature}")


def other_repo_token(s: Secure) -> dict[str, str]:
    return bearer(s.cached_token("admin-other", s.admin.basic,
                                 "repository:other/app:pull,push,delete"))


def pull_only_token(s: Secure) -> dict[str, str]:
    return bearer(s.cached_token("admin-team-pull", s.admin.basic, "repository:team/app:pull"))


def anonymous_token(s: Secure) -> dict[str, str]:
    return bearer(s.cached_token("anonymous", None, "repository:team/app:pull,push,delete"))


@dataclass(frozen=True)
class Credentials:
    id: str
    headers: Callable[[Secure], dict[str, str] | None]
    # An authenticated caller (repository routes only): refused with 403, or with 401 and a
    # challenge for the missing scope. None: refused with 401 everywhere.
    authenticated: bool = False
    applies: Callable[[Route], bool] = lambda route: True


CREDENTIALS = [
    Credentials("none", lambda s: None),
    Credentials("wrong-secret", lambda s: basic(s.admin.id, s.admin.secret[:-1] + "x")),
    Credentials("empty-secret", lambda s: basic(s.admin.id, "")),
    Credentials("unknown-key", lambda s: basic("AKCHAAAAAAAAAAAAAAAA", s.admin.secret)),
    Credentials("unknown-user", lambda s: basic("mallory", "password")),
    Credentials("malformed-basic", lambda s: {"Authorization": "Basic not base64!"}),
    Credentials("unsupported-scheme", lambda s: {"Authorization": "Digest username=admin"}),
    Credentials("expired-temporary-password", expired_password),
    Credentials("temporary-password-other-key", foreign_password),
    Credentials("temporary-password-as-token", lambda s: bearer(s.cached_login_password())),
    Credentials("token-as-temporary-password",
                lambda s: basic("AWS", pull_only_token(s)["Authorization"].split()[1])),
    Credentials("expired-token", expired_token),
    Credentials("token-other-key", foreign_token),
    Credentials("unsigned-token", unsigned_token),
    Credentials("token-signature-flipped", flipped_signature),
    Credentials("token-access-changed", changed_access),
    Credentials("garbage-token", lambda s: bearer("not.a.token")),
    Credentials("anonymous-token", anonymous_token),
    Credentials("token-other-repository", other_repo_token, authenticated=True,
                applies=lambda route: route.repository),
    Credentials("token-pull-only", pull_only_token, authenticated=True,
                applies=lambda route: route.scope not in (None, "pull")),
]


def challenge(secure: Secure, scope: str | None) -> str:
    value = f'Bearer realm="{secure.url}/v2/token",service="{SERVICE}"'
    return value + (f',scope="{scope}"' if scope else "")


@pytest.mark.parametrize(("route", "credentials"), [
    pytest.param(route, credentials, id=f"{route.id}-{credentials.id}")
    for route in ROUTES for credentials in CREDENTIALS if credentials.applies(route)])
def test_route_refuses(secure: Secure, route: Route, credentials: Credentials) -> None:
    headers = credentials.headers(secure)
    before = secure.snapshot()
    resp = send(secure, route, headers)
    if credentials.authenticated:
        assert resp.status_code in (401, 403), describe(resp)
    else:
        assert resp.status_code == 401, describe(resp)
    if route.method != "HEAD":
        expected = {401: "UNAUTHORIZED", 403: "DENIED"}[resp.status_code]
        assert error_codes(resp) == [expected], describe(resp)
    if resp.status_code == 401:
        header = resp.headers.get("WWW-Authenticate", "")
        if credentials.id in ("none", "anonymous-token") and route.scope is not None:
            full = f"repository:team/app:{route.scope}"
            expected_header = challenge(secure, full)
            if credentials.id == "anonymous-token":
                # A token without the scope: the Docker token protocol's insufficient_scope.
                expected_header += ',error="insufficient_scope"'
            assert header == expected_header, describe(resp)
        else:
            assert header.startswith(challenge(secure, None)), describe(resp)
    assert secure.snapshot() == before, f"a refused {route.id} changed the registry"


@pytest.mark.parametrize("value", [
    "Basic", "Basic ", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":password").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    "Basic " + base64.b64encode(b"admin:pw").decode() + "garbage",
    "Bearer", "Bearer ", "Bearer a.b", "Bearer a.b.c.d", "Negotiate abc", "garbage",
])
def test_malformed_authorization_headers_are_401(secure: Secure, value: str) -> None:
    before = secure.snapshot()
    for route in ROUTES:
        resp = send(secure, route, {"Authorization": value})
        assert resp.status_code == 401, describe(resp)
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer realm="), \
            describe(resp)
    assert secure.snapshot() == before


def test_forged_credentials_are_shaped_like_real_ones(secure: Secure) -> None:
    """Control for the refusal matrix: the same forgeries, but valid, are accepted; so the
    expired/tampered ones are refused for the reason the test names."""
    claims = secure.token_claims("team/app", ["pull"])
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          bearer(secure.forge_token(claims)))
    assert resp.status_code == 200, describe(resp)
    password = secure.forge_password({"k": secure.admin.id, "exp": int(time.time()) + 600,
                                      "p": "registry-password"})
    resp = secure.request("GET", "/v2/team/app/manifests/v1", basic("AWS", password))
    assert resp.status_code == 200, describe(resp)
    # A token signed with the temporary-password key (or the other way round) is refused.
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          bearer(secure.forge_token(claims, key=secure.keys.password_key)))
    assert resp.status_code == 401, describe(resp)


def test_token_lacking_the_scope_gets_a_challenge_for_it(secure: Secure) -> None:
    """A client holding a pull token that now needs to push must learn which scope to ask for
    (the Docker token spec: 401 with `error="insufficient_scope"` and the scope). oras-py, for
    one, pulls a pull-only token on its first HEAD and then needs the challenge to upgrade it:
    with a bare 403 and no challenge every oras push with credentials fails."""
    token = pull_only_token(secure)
    for path, method, scope in [
        ("/v2/team/app/blobs/uploads/", "POST", "repository:team/app:pull,push"),
        (f"/v2/team/app/manifests/{_img(secure).digest}", "DELETE",
         "repository:team/app:delete"),
        ("/v2/other/app/manifests/v1", "GET", "repository:other/app:pull"),
    ]:
        resp = secure.request(method, path, token)
        assert resp.status_code in (401, 403), describe(resp)
        header = resp.headers.get("WWW-Authenticate", "")
        assert header.startswith(challenge(secure, None)), describe(resp)
        assert f'scope="{scope}"' in header, describe(resp)


# --------------------------------------------------------------------------------------------
# Admin, tokens, the token endpoint
# --------------------------------------------------------------------------------------------

def test_admin_basic_and_token_flow(secure: Secure) -> None:
    image = secure.images["team/app"]
    resp = secure.request("GET", "/v2/", secure.admin.basic)
    assert resp.status_code == 200, describe(resp)
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          {**secure.admin.basic, "Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.content == image.manifest, describe(resp)

    # A client follows the challenge: no credentials -> 401 -> token with Basic -> retry.
    first = secure.request("GET", "/v2/team/app/manifests/v1")
    assert first.status_code == 401
    params = dict(part.split("=", 1) for part in
                  first.headers["WWW-Authenticate"].removeprefix("Bearer ").split(","))
    realm, service, scope = (params[k].strip('"') for k in ("realm", "service", "scope"))
    resp = secure.http.get(realm, params={"service": service, "scope": scope},
                           headers=secure.admin.basic, timeout=TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body["token"] == body["access_token"]
    assert 0 < body["expires_in"] <= 3600
    assert body["issued_at"].endswith("Z")
    claims = claims_of(body["token"])
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert claims["aud"] == SERVICE and claims["iss"] == SERVICE
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    resp = secure.request("GET", "/v2/team/app/manifests/v1", bearer(body["token"]))
    assert resp.status_code == 200 and resp.content == image.manifest, describe(resp)
    resp = secure.request("GET", "/v2/", bearer(body["token"]))
    assert resp.status_code == 200, describe(resp)


def test_admin_pushes_pulls_and_deletes_with_a_token(secure: Secure) -> None:
    repo = f"team/admin-{uuid.uuid4().hex[:8]}"
    token = bearer(secure.token_for(secure.admin.basic,
                                    f"repository:{repo}:pull,push,delete"))
    image = make_image(repo)
    secure.push_image(repo, image, "v1", token)
    resp = secure.request("GET", f"/v2/{repo}/blobs/{sha256(image.layer)}", token)
    assert resp.status_code == 200 and resp.content == image.layer, describe(resp)
    resp = secure.request("GET", f"/v2/{repo}/tags/list", token)
    assert resp.json()["tags"] == ["v1"], describe(resp)
    resp = secure.request("DELETE", f"/v2/{repo}/manifests/{image.digest}", token)
    assert resp.status_code == 202, describe(resp)
    resp = secure.request("GET", f"/v2/{repo}/manifests/v1", secure.admin.basic)
    assert resp.status_code == 404, describe(resp)


def access_of(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, describe(resp)
    return list(claims_of(resp.json()["token"])["access"])


def test_token_endpoint_grants_only_allowed_scopes(secure: Secure) -> None:
    reader = secure.users["reader"]
    denier = secure.users["denier"]
    cases = [
        (reader.basic, "team/app", ["pull"]),
        (reader.basic, "team/secret", ["pull"]),
        (reader.basic, "other/app", []),
        (denier.basic, "team/app", ["delete", "pull", "push"]),
        (denier.basic, "team/secret", []),
        (secure.admin.basic, "team/secret", ["delete", "pull", "push"]),
        (secure.users["nopolicy"].basic, "team/app", []),
        (None, "team/app", []),
    ]
    for headers, repo, granted in cases:
        resp = secure.token(headers, f"repository:{repo}:pull,push,delete")
        assert access_of(resp) == [{"type": "repository", "name": repo, "actions": granted}], \
            (repo, headers)


def test_token_endpoint_password_grant(secure: Secure) -> None:
    reader = secure.users["reader"]
    form = {"grant_type": "password", "username": reader.id, "password": reader.secret,
            "service": SERVICE, "scope": "repository:team/app:pull,push",
            "client_id": "tests"}
    resp = secure.request("POST", "/v2/token", data=form)
    assert access_of(resp) == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert resp.json().get("scope") == "repository:team/app:pull,push"
    token = resp.json()["access_token"]
    resp = secure.request("GET", "/v2/team/app/manifests/v1", bearer(token))
    assert resp.status_code == 200, describe(resp)
    resp = secure.request("POST", "/v2/team/app/blobs/uploads/", bearer(token))
    assert resp.status_code in (401, 403), describe(resp)

    wrong = {**form, "password": reader.secret + "x"}
    resp = secure.request("POST", "/v2/token", data=wrong)
    assert resp.status_code == 401, describe(resp)
    assert error_codes(resp) == ["UNAUTHORIZED"]
    unknown = {**form, "username": "AKCHBBBBBBBBBBBBBBBB"}
    assert secure.request("POST", "/v2/token", data=unknown).status_code == 401
    refresh = {**form, "grant_type": "refresh_token", "refresh_token": "x"}
    resp = secure.request("POST", "/v2/token", data=refresh)
    assert resp.status_code in (400, 401), describe(resp)
    assert "token" not in resp.json()


def test_token_endpoint_several_scopes_and_oddities(secure: Secure) -> None:
    reader = secure.users["reader"]
    resp = secure.token(reader.basic, "repository:team/app:pull,push",
                        "repository:other/app:pull")
    assert access_of(resp) == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
        {"type": "repository", "name": "other/app", "actions": []}]
    # Several scopes in one parameter (space separated) as the token spec allows.
    resp = secure.token(reader.basic, "repository:team/app:pull repository:team/secret:push")
    assert access_of(resp) == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
        {"type": "repository", "name": "team/secret", "actions": []}]
    # Invalid names and unknown scope types grant nothing.
    resp = secure.token(secure.admin.basic, "repository:Bad/Name:pull",
                        "repository:../etc:pull", "foo:bar:baz", "garbage")
    assert access_of(resp) == []
    # No scope at all: a token with no access (what `docker login` asks for).
    resp = secure.token(reader.basic)
    assert access_of(resp) == []
    # The catalog scope only for an authenticated caller.
    assert access_of(secure.token(reader.basic, "registry:catalog:*")) == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert access_of(secure.token(None, "registry:catalog:*")) == []
    # Wrong service.
    resp = secure.token(reader.basic, "repository:team/app:pull", service="elsewhere")
    assert resp.status_code in (400, 401, 403), describe(resp)
    assert "token" not in resp.json()
    # Bad credentials at the token endpoint: 401 with a challenge, no token.
    for headers in (basic(reader.id, "wrong"), basic("nobody", "x"),
                    {"Authorization": "Basic ???"}, bearer("x.y.z")):
        resp = secure.token(headers, "repository:team/app:pull")
        assert resp.status_code == 401, describe(resp)
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer realm="), \
            describe(resp)
        assert "token" not in resp.json()


def test_token_is_bound_to_its_service_and_repository(secure: Secure) -> None:
    token = secure.token_for(secure.admin.basic, "repository:team/app:pull")
    resp = secure.request("GET", "/v2/team/secret/manifests/v1", bearer(token))
    assert resp.status_code in (401, 403), describe(resp)
    # The same grant for another audience is refused even when signed with the right key.
    claims = secure.token_claims("team/app", ["pull"])
    claims["aud"] = "another-service"
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          bearer(secure.forge_token(claims)))
    assert resp.status_code == 401, describe(resp)
    claims = secure.token_claims("team/app", ["pull"])
    claims["iss"] = "someone-else"
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          bearer(secure.forge_token(claims)))
    assert resp.status_code == 401, describe(resp)
    claims = secure.token_claims("team/app", ["pull"])
    claims["nbf"] = int(time.time()) + 3600
    resp = secure.request("GET", "/v2/team/app/manifests/v1",
                          bearer(secure.forge_token(claims)))
    assert resp.status_code == 401, describe(resp)


# --------------------------------------------------------------------------------------------
# Policies: pull-only users, Deny statements, user without policy
# --------------------------------------------------------------------------------------------

def assert_cannot_push_or_delete(secure: Secure, headers: dict[str, str], repo: str,
                                 status: int = 403) -> None:
    image = secure.images.get(repo) or make_image(repo)
    before = secure.snapshot()
    attempts = [
        ("POST", f"/v2/{repo}/blobs/uploads/", None, {}),
        ("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(HIJACK)}", HIJACK,
         {"Content-Type": "application/octet-stream"}),
        ("PUT", f"/v2/{repo}/manifests/pushed", image.manifest, {"Content-Type": OCI_MANIFEST}),
        ("DELETE", f"/v2/{repo}/manifests/{image.digest}", None, {}),
        ("DELETE", f"/v2/{repo}/manifests/v1", None, {}),
        ("DELETE", f"/v2/{repo}/blobs/{sha256(image.layer)}", None, {}),
    ]
    for method, path, data, extra in attempts:
        resp = secure.request(method, path, {**headers, **extra}, data=data)
        assert resp.status_code == status, describe(resp)
        assert error_codes(resp) == [{401: "UNAUTHORIZED", 403: "DENIED"}[status]], \
            describe(resp)
    assert secure.snapshot() == before


def assert_can_pull(secure: Secure, headers: dict[str, str], repo: str) -> None:
    image = secure.images[repo]
    resp = secure.request("GET", f"/v2/{repo}/manifests/v1",
                          {**headers, "Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.content == image.manifest, describe(resp)
    resp = secure.request("HEAD", f"/v2/{repo}/manifests/{image.digest}", headers)
    assert resp.status_code == 200, describe(resp)
    for blob in (image.config, image.layer):
        resp = secure.request("GET", f"/v2/{repo}/blobs/{sha256(blob)}", headers)
        assert resp.status_code == 200 and resp.content == blob, describe(resp)
        resp = secure.request("HEAD", f"/v2/{repo}/blobs/{sha256(blob)}", headers)
        assert resp.status_code == 200, describe(resp)


def test_pull_only_user_pulls_but_cannot_push_or_delete(secure: Secure) -> None:
    reader = secure.users["reader"]
    assert_can_pull(secure, reader.basic, "team/app")
    resp = secure.request("GET", "/v2/team/app/tags/list", reader.basic)
    assert resp.status_code == 200 and resp.json()["tags"] == ["v1"], describe(resp)
    assert_cannot_push_or_delete(secure, reader.basic, "team/app")
    # ... and outside team/* not even pull.
    resp = secure.request("GET", "/v2/other/app/manifests/v1", reader.basic)
    assert resp.status_code == 403 and error_codes(resp) == ["DENIED"], describe(resp)
    # Its token: pull only, and the same outcome.
    token = bearer(secure.token_for(reader.basic, "repository:team/app:pull,push,delete"))
    assert_can_pull(secure, token, "team/app")
    before = secure.snapshot()
    for method, path in [("POST", "/v2/team/app/blobs/uploads/"),
                         ("DELETE", f"/v2/team/app/manifests/{_img(secure).digest}")]:
        resp = secure.request(method, path, token)
        assert resp.status_code in (401, 403), describe(resp)
    assert secure.snapshot() == before


def test_pull_only_user_cannot_upload_through_someone_elses_session(secure: Secure) -> None:
    reader = secure.users["reader"]
    before = secure.snapshot()
    for method, suffix, data in [("PATCH", "", HIJACK), ("GET", "", None),
                                 ("PUT", f"?digest={sha256(HIJACK)}", HIJACK),
                                 ("DELETE", "", None)]:
        resp = secure.request(method, f"/v2/team/app/blobs/uploads/{secure.upload_id}{suffix}",
                              {**reader.basic, "Content-Type": "application/octet-stream"},
                              data=data)
        assert resp.status_code == 403, describe(resp)
    assert secure.snapshot() == before


def test_deny_statement_removes_one_repository(secure: Secure) -> None:
    denier = secure.users["denier"]
    resp = secure.request("GET", "/v2/team/secret/manifests/v1", denier.basic)
    assert resp.status_code == 403 and error_codes(resp) == ["DENIED"], describe(resp)
    resp = secure.request("GET", "/v2/team/secret/tags/list", denier.basic)
    assert resp.status_code == 403, describe(resp)
    assert_cannot_push_or_delete(secure, denier.basic, "team/secret")
    # Everything else is allowed by its Allow *.
    assert_can_pull(secure, denier.basic, "team/app")
    assert_can_pull(secure, denier.basic, "other/app")
    repo = f"team/denier-{uuid.uuid4().hex[:8]}"
    secure.push_image(repo, make_image(repo), "v1", denier.basic)


def test_user_without_policy_is_authenticated_but_denied(secure: Secure) -> None:
    user = secure.users["nopolicy"]
    resp = secure.request("GET", "/v2/", user.basic)
    assert resp.status_code == 200, describe(resp)
    resp = secure.request("GET", "/v2/team/app/manifests/v1", user.basic)
    assert resp.status_code == 403 and error_codes(resp) == ["DENIED"], describe(resp)
    assert_cannot_push_or_delete(secure, user.basic, "team/app")
    # Repositories with a public policy are readable by every user, too.
    assert_can_pull(secure, user.basic, "public/app")
    assert_cannot_push_or_delete(secure, user.basic, "public/app")


def test_mount_from_a_repository_the_caller_cannot_read_is_an_upload(secure: Secure) -> None:
    repo = f"team/mount-{uuid.uuid4().hex[:8]}"
    secure.create_user(f"pusher-{repo[-8:]}", policy(allow([*PULL_ACTIONS, *PUSH_ACTIONS],
                                                           repo_arn(repo))))
    pusher = secure.users[f"pusher-{repo[-8:]}"]
    secret_layer = sha256(secure.images["team/secret"].layer)
    resp = secure.request("POST", f"/v2/{repo}/blobs/uploads/?mount={secret_layer}"
                          "&from=team/secret", pusher.basic)
    assert resp.status_code == 202, describe(resp)
    resp = secure.request("HEAD", f"/v2/{repo}/blobs/{secret_layer}", secure.admin.basic)
    assert resp.status_code == 404, "a blob was mounted from a repository the caller can't read"
    # With read access to the source the mount works.
    public_layer = sha256(secure.images["public/app"].layer)
    resp = secure.request("POST", f"/v2/{repo}/blobs/uploads/?mount={public_layer}"
                          "&from=public/app", pusher.basic)
    assert resp.status_code == 201, describe(resp)


# --------------------------------------------------------------------------------------------
# Anonymous callers and public repositories
# --------------------------------------------------------------------------------------------

def test_anonymous_token_is_empty_without_a_public_policy(secure: Secure) -> None:
    resp = secure.token(None, "repository:team/app:pull,push,delete")
    assert access_of(resp) == [{"type": "repository", "name": "team/app", "actions": []}]
    token = bearer(resp.json()["token"])
    resp = secure.request("GET", "/v2/team/app/manifests/v1", token)
    assert resp.status_code == 401, describe(resp)
    assert resp.headers["WWW-Authenticate"] == (
        challenge(secure, "repository:team/app:pull") + ',error="insufficient_scope"')
    assert secure.request("GET", "/v2/", token).status_code == 401


def test_public_repository_anonymous_pull_without_token(secure: Secure) -> None:
    assert_can_pull(secure, {}, "public/app")
    resp = secure.request("GET", "/v2/public/app/tags/list")
    assert resp.status_code == 200 and resp.json()["tags"] == ["v1"], describe(resp)
    assert_cannot_push_or_delete(secure, {}, "public/app", status=401)


def test_public_repository_anonymous_pull_with_token(secure: Secure) -> None:
    resp = secure.token(None, "repository:public/app:pull,push,delete")
    assert access_of(resp) == [{"type": "repository", "name": "public/app", "actions": ["pull"]}]
    token = bearer(resp.json()["token"])
    assert_can_pull(secure, token, "public/app")
    before = secure.snapshot()
    resp = secure.request("POST", "/v2/public/app/blobs/uploads/", token)
    assert resp.status_code == 401, describe(resp)
    resp = secure.request("DELETE", "/v2/public/app/manifests/v1", token)
    assert resp.status_code == 401, describe(resp)
    assert secure.snapshot() == before
    # The public grant is for that repository only.
    resp = secure.request("GET", "/v2/team/app/manifests/v1", token)
    assert resp.status_code == 401, describe(resp)


def test_public_policy_with_the_issues_pull_actions_works_for_token_clients(
        secure: Secure) -> None:
    """public/three's policy grants `*` exactly the issue's pull actions (BatchGetImage,
    GetDownloadUrlForLayer, BatchCheckLayerAvailability). Plain anonymous requests may pull;
    a real client goes through the token endpoint, which must grant `pull` as well."""
    image = secure.images["public/three"]
    resp = secure.request("GET", f"/v2/public/three/blobs/{sha256(image.layer)}")
    assert resp.status_code == 200, describe(resp)
    resp = secure.token(None, "repository:public/three:pull")
    assert access_of(resp) == [
        {"type": "repository", "name": "public/three", "actions": ["pull"]}]
    token = bearer(resp.json()["token"])
    assert_can_pull(secure, token, "public/three")


def test_anonymous_catalog_and_base_are_refused(secure: Secure) -> None:
    for path in ("/v2/", "/v2/_catalog"):
        resp = secure.request("GET", path)
        assert resp.status_code == 401, describe(resp)
        assert resp.headers["WWW-Authenticate"].startswith(challenge(secure, None))


# --------------------------------------------------------------------------------------------
# The catalog lists only what the caller may see
# --------------------------------------------------------------------------------------------

def catalog(secure: Secure, headers: dict[str, str], n: int | None = None,
            url: str | None = None) -> tuple[list[str], str | None]:
    params = {"n": str(n)} if n is not None else None
    resp = secure.request("GET", url or "/v2/_catalog", headers, params=params)
    assert resp.status_code == 200, describe(resp)
    link = resp.headers.get("Link")
    following = None
    if link:
        assert link.endswith('>; rel="next"'), describe(resp)
        following = urljoin(secure.url + "/", link[1:link.index(">")])
    return list(resp.json()["repositories"]), following


def walk_catalog(secure: Secure, headers: dict[str, str], n: int,
                 limit: int = 5000) -> list[str]:
    names, following = catalog(secure, headers, n)
    assert len(names) <= n
    pages = 1
    while following:
        query = parse_qs(urlparse(following).query)
        assert query["n"] == [str(n)] and query["last"] == [names[-1]], following
        page, following = catalog(secure, headers, url=following)
        assert len(page) <= n
        assert following is None or len(page) == n
        names += page
        pages += 1
        assert pages < limit, "the catalog's Link chain does not end"
    return names


def test_catalog_is_filtered_per_caller(secure: Secure) -> None:
    everything, _ = catalog(secure, secure.admin.basic)
    for repo in ["team/app", "team/secret", "other/app", "public/app", "public/three"]:
        assert repo in everything
    assert everything == sorted(everything)
    expected = {
        "reader": [r for r in everything if r.startswith(("team/", "public/"))],
        "denier": [r for r in everything if r != "team/secret"],
        "nopolicy": [r for r in everything if r.startswith("public/")],
        "pwuser": [r for r in everything if r.startswith(("team/", "public/"))],
    }
    for user, names in expected.items():
        key = secure.users[user]
        assert catalog(secure, key.basic)[0] == names, user
        for n in (1, 2, 3, len(names) + 1):
            assert walk_catalog(secure, key.basic, n) == names, (user, n)
    assert walk_catalog(secure, secure.admin.basic, 2) == everything
    # With a token the same filtering applies.
    token = bearer(secure.token_for(secure.users["reader"].basic, "registry:catalog:*"))
    assert catalog(secure, token)[0] == expected["reader"]


def test_catalog_filtering_across_database_batches(
        make_registry: Callable[..., RegistryProcess]) -> None:
    """More than one internal batch (1000 names) of invisible repositories before the visible
    ones: the page still fills, and paging stays correct."""
    server = make_registry(anonymous=False)
    admin = Key("admin", *server.admin_credentials)
    http = requests.Session()
    http.trust_env = False
    database = server.data_dir / "metadata.db"
    conn = sqlite3.connect(database, timeout=30)
    try:
        now = int(time.time() * 1e6)
        with conn:
            conn.executemany("INSERT INTO repositories (name, created_at) VALUES (?, ?)",
                             [(f"bulk/r{i:05d}", now) for i in range(2345)]
                             + [(f"team/t{i:03d}", now) for i in range(7)])
    finally:
        conn.close()
    reader = parse_key("reader", run_cli(server.data_dir, "admin", "users", "create",
                                         "reader").stdout)
    path = server.data_dir.parent / "reader.json"
    path.write_text(TEAM_PULL)
    run_cli(server.data_dir, "admin", "users", "put-policy", "reader", "pull", str(path))
    setup = Secure(server, http, admin, ServerKeys((server.data_dir / "server.key")
                                                   .read_bytes()))
    team = [f"team/t{i:03d}" for i in range(7)]
    assert catalog(setup, reader.basic)[0] == team
    assert catalog(setup, reader.basic, 3)[0] == team[:3]
    assert walk_catalog(setup, reader.basic, 3) == team
    assert walk_catalog(setup, reader.basic, 7) == team
    everything = walk_catalog(setup, admin.basic, 1000)
    assert len(everything) == 2352 and everything == sorted(everything)
    http.close()


# --------------------------------------------------------------------------------------------
# Temporary passwords and user passwords
# --------------------------------------------------------------------------------------------

def test_login_password(secure: Secure) -> None:
    password = secure.login_password()
    assert password and ":" not in password and "\n" not in password
    claims = claims_of(password)
    assert 11 * 3600 < claims["exp"] - time.time() <= 12 * 3600 + 60
    resp = secure.request("GET", "/v2/team/app/manifests/v1", basic("AWS", password))
    assert resp.status_code == 200, describe(resp)
    resp = secure.token(basic("AWS", password), "repository:team/app:pull,push")
    assert access_of(resp) == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    resp = secure.request("POST", "/v2/token", data={
        "grant_type": "password", "username": "AWS", "password": password,
        "service": SERVICE, "scope": "repository:team/app:pull"})
    assert access_of(resp) == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    # The user name must be AWS, not the key id or anything else.
    resp = secure.request("GET", "/v2/team/app/manifests/v1", basic(secure.admin.id, password))
    assert resp.status_code == 401, describe(resp)
    resp = secure.request("GET", "/v2/team/app/manifests/v1", basic("aws", password))
    assert resp.status_code == 401, describe(resp)
    resp = secure.request("GET", "/v2/team/app/manifests/v1", basic("AWS", password[:-2]))
    assert resp.status_code == 401, describe(resp)


def test_login_password_for_a_limited_key(secure: Secure) -> None:
    reader = secure.users["reader"]
    password = secure.login_password(reader.id)
    headers = basic("AWS", password)
    assert_can_pull(secure, headers, "team/app")
    assert_cannot_push_or_delete(secure, headers, "team/app")
    assert access_of(secure.token(headers, "repository:team/app:pull,push")) == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]
    result = secure.cli("login-password", "--access-key-id", "AKCHNOSUCHKEY0000000",
                        check=False)
    assert result.returncode != 0


def test_user_password(secure: Secure) -> None:
    headers = basic("pwuser", "correct horse:battery")
    assert_can_pull(secure, headers, "team/app")
    assert_cannot_push_or_delete(secure, headers, "team/app")
    assert access_of(secure.token(headers, "repository:team/app:pull,push")) == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]
    resp = secure.request("POST", "/v2/token", data={
        "grant_type": "password", "username": "pwuser", "password": "correct horse:battery",
        "service": SERVICE, "scope": "repository:team/app:pull"})
    assert access_of(resp) == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    for user, password in [("pwuser", "correct horse"), ("pwuser", "wrong"),
                           ("pwuser", ""), ("PWUSER", "correct horse:battery"),
                           ("reader", "correct horse:battery")]:
        resp = secure.request("GET", "/v2/team/app/manifests/v1", basic(user, password))
        assert resp.status_code == 401, (user, password, describe(resp))
    # Wrong passwords in between do not spoil the cache of verified passwords.
    resp = secure.request("GET", "/v2/team/app/manifests/v1", headers)
    assert resp.status_code == 200, describe(resp)


def test_token_of_a_password_user_works_until_the_user_is_deleted(secure: Secure) -> None:
    # A token minted from a user name and password carries no access key: its validity is
    # the user's existence.
    secure.create_user("pwtoken", TEAM_PULL, password="pw-token-secret")
    token = secure.token_for(basic("pwtoken", "pw-token-secret"), "repository:team/app:pull")
    resp = secure.request("GET", "/v2/team/app/manifests/v1", bearer(token))
    assert resp.status_code == 200, describe(resp)
    secure.cli("admin", "users", "delete", "pwtoken")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        resp = secure.request("GET", "/v2/team/app/manifests/v1", bearer(token))
        if resp.status_code != 200:
            break
        time.sleep(0.5)
    assert resp.status_code == 401, describe(resp)


def test_user_password_is_not_stored_in_clear(secure: Secure) -> None:
    data = b"".join(p.read_bytes() for p in secure.data_dir.glob("metadata.db*"))
    assert b"correct horse" not in data


# --------------------------------------------------------------------------------------------
# Deactivated keys and deleted users: effective at once, while the server runs
# --------------------------------------------------------------------------------------------

def refused_everywhere(secure: Secure, headers: dict[str, str]) -> None:
    before = secure.snapshot()
    for route in ROUTES:
        resp = send(secure, route, headers)
        assert resp.status_code == 401, describe(resp)
    assert secure.snapshot() == before


def test_deactivated_key_stops_working_at_once(secure: Secure) -> None:
    name = f"temp-{uuid.uuid4().hex[:8]}"
    key = secure.create_user(name, policy(allow("*")))
    password = secure.login_password(key.id)
    token = secure.token_for(key.basic, "repository:team/app:pull")
    for headers in (key.basic, basic("AWS", password), bearer(token)):
        resp = secure.request("GET", "/v2/team/app/manifests/v1", headers)
        assert resp.status_code == 200, describe(resp)

    secure.cli("admin", "keys", "deactivate", key.id)
    listed = json.loads(secure.cli("admin", "keys", "list", name, "--output", "json").stdout)
    assert [(k["id"], k["status"]) for k in listed] == [(key.id, "Inactive")]
    refused_everywhere(secure, key.basic)
    refused_everywhere(secure, basic("AWS", password))
    assert secure.token(key.basic, "repository:team/app:pull").status_code == 401
    assert secure.token(basic("AWS", password), "repository:team/app:pull").status_code == 401
    assert secure.cli("login-password", "--access-key-id", key.id, check=False).returncode != 0

    secure.cli("admin", "keys", "activate", key.id)
    for headers in (key.basic, basic("AWS", password)):
        resp = secure.request("GET", "/v2/team/app/manifests/v1", headers)
        assert resp.status_code == 200, describe(resp)

    secure.cli("admin", "keys", "delete", key.id)
    refused_everywhere(secure, key.basic)
    refused_everywhere(secure, basic("AWS", password))


def test_token_of_a_deactivated_key_cannot_be_renewed(secure: Secure) -> None:
    """A token lives 15 minutes; but presenting it to the token endpoint must not mint a new
    one (for new scopes, even) once its access key is deactivated: otherwise a deactivated key
    keeps its access forever."""
    name = f"renew-{uuid.uuid4().hex[:8]}"
    key = secure.create_user(name, policy(allow("*")))
    token = secure.token_for(key.basic, "repository:team/app:pull")
    secure.cli("admin", "keys", "deactivate", key.id)
    resp = secure.token(bearer(token), "repository:team/secret:pull,push,delete")
    assert resp.status_code == 401, (
        "a deactivated key's token was exchanged for a new one with access "
        f"{access_of(resp) if resp.status_code == 200 else None}\n{describe(resp)}")


def test_deleted_user_stops_working_at_once(secure: Secure) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    key = secure.create_user(name, policy(allow("*")), password="pw-of-gone")
    password = secure.login_password(key.id)
    for headers in (key.basic, basic("AWS", password), basic(name, "pw-of-gone")):
        resp = secure.request("GET", "/v2/team/app/manifests/v1", headers)
        assert resp.status_code == 200, describe(resp)
    token = secure.token_for(key.basic, "repository:team/app:pull")
    secure.cli("admin", "users", "delete", name)
    for headers in (key.basic, basic("AWS", password), basic(name, "pw-of-gone")):
        refused_everywhere(secure, headers)
    listed = json.loads(secure.cli("admin", "keys", "list", "--output", "json").stdout)
    assert key.id not in [k["id"] for k in listed]
    resp = secure.token(bearer(token), "repository:team/secret:pull,push,delete")
    assert resp.status_code == 401, (
        "a deleted user's token was exchanged for a new one\n" + describe(resp))


def test_token_of_a_deleted_user_does_not_inherit_a_new_users_rights(secure: Secure) -> None:
    """Tokens name their user by database id. A new user may get the id of a deleted one
    (SQLite reuses the highest rowid): the old token must not then act with the new user's
    policies, neither at the token endpoint nor in the catalog."""
    old = secure.create_user(f"old-{uuid.uuid4().hex[:8]}")
    token = secure.token_for(old.basic, "repository:team/secret:pull")
    # A token is no credential at the token service (it would renew itself forever).
    assert secure.token(bearer(token), "repository:team/secret:pull").status_code == 401
    secure.cli("admin", "users", "delete", old.user)
    new = secure.create_user(f"new-{uuid.uuid4().hex[:8]}", policy(allow("*")))
    reused = claims_of(secure.token_for(new.basic))["uid"] == claims_of(token)["uid"]
    problems = []
    resp = secure.token(bearer(token), "repository:team/secret:pull,push,delete")
    granted = access_of(resp)[0]["actions"] if resp.status_code == 200 else None
    if granted:
        problems.append(f"the deleted user's token was renewed with {granted}")
    resp = secure.request("GET", "/v2/_catalog", bearer(token))
    shown = resp.json().get("repositories") if resp.status_code == 200 else None
    if shown:
        problems.append(f"the deleted user's token lists the catalog {shown}")
    assert not problems, f"uid reused by {new.user}: {reused}; " + "; ".join(problems)


def test_refusals_do_not_reveal_whether_a_key_exists_or_is_active(secure: Secure) -> None:
    key = secure.create_user(f"probe-{uuid.uuid4().hex[:8]}", policy(allow("*")))
    secure.cli("admin", "keys", "deactivate", key.id)
    bodies = {}
    for label, headers in [("unknown key", basic("AKCHCCCCCCCCCCCCCCCC", "guess")),
                           ("active key, wrong secret", basic(secure.admin.id, "guess")),
                           ("inactive key, wrong secret", basic(key.id, "guess"))]:
        resp = secure.request("GET", "/v2/team/app/manifests/v1", headers)
        assert resp.status_code == 401, describe(resp)
        bodies[label] = resp.json()
    assert len({json.dumps(body) for body in bodies.values()}) == 1, bodies


def test_upload_session_of_another_repository_is_unknown(secure: Secure) -> None:
    """A user who may push to one repository cannot touch another repository's upload
    session by naming it under their own repository."""
    repo = f"team/own-{uuid.uuid4().hex[:8]}"
    user = secure.create_user(f"own-{repo[-8:]}",
                              policy(allow([*PULL_ACTIONS, *PUSH_ACTIONS], repo_arn(repo))))
    resp = secure.request("POST", f"/v2/{repo}/blobs/uploads/", user.basic)
    assert resp.status_code == 202, describe(resp)
    before = secure.snapshot()
    session = f"/v2/{repo}/blobs/uploads/{secure.upload_id}"
    for method, suffix, data in [("GET", "", None), ("PATCH", "", HIJACK),
                                 ("PUT", f"?digest={sha256(HIJACK)}", HIJACK),
                                 ("DELETE", "", None)]:
        resp = secure.request(method, session + suffix,
                              {**user.basic, "Content-Type": "application/octet-stream"},
                              data=data)
        assert resp.status_code == 404, describe(resp)
        assert error_codes(resp) == ["BLOB_UPLOAD_UNKNOWN"], describe(resp)
    assert secure.snapshot() == before


def test_monolithic_upload_needs_the_upload_and_complete_actions(secure: Secure) -> None:
    """`POST ...?digest=` initiates, uploads and completes a layer in one request; a policy that
    allows only ecr:InitiateLayerUpload must not be enough to store a blob."""
    repo = f"team/initiate-{uuid.uuid4().hex[:8]}"
    user = secure.create_user(f"init-{repo[-8:]}",
                              policy(allow(["ecr:InitiateLayerUpload"], repo_arn(repo))))
    resp = secure.request("POST", f"/v2/{repo}/blobs/uploads/", user.basic)
    assert resp.status_code == 202, describe(resp)  # initiating is allowed
    location = urljoin(secure.url, resp.headers["Location"])
    resp = secure.request("PATCH", location, {**user.basic,
                                              "Content-Type": "application/octet-stream"},
                          data=HIJACK)
    assert resp.status_code == 403, describe(resp)  # uploading a part is not
    before = secure.snapshot()
    resp = secure.push_blob(repo, HIJACK, user.basic)
    assert resp.status_code == 403, describe(resp)
    assert secure.snapshot() == before


# --------------------------------------------------------------------------------------------
# The bootstrap administrator, the server key, secrets at rest
# --------------------------------------------------------------------------------------------

def test_bootstrap_credentials_and_server_key(
        make_registry: Callable[..., RegistryProcess]) -> None:
    server = make_registry(anonymous=False)
    path = server.data_dir / "admin-credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parser = configparser.ConfigParser()
    parser.read_string(path.read_text())
    assert parser.sections() == ["default"]
    assert set(parser["default"]) == {"aws_access_key_id", "aws_secret_access_key"}
    key_id = parser["default"]["aws_access_key_id"]
    secret = parser["default"]["aws_secret_access_key"]
    assert (key_id, secret) == server.admin_credentials
    assert key_id.startswith("AKCH") and len(key_id) == 20
    assert len(secret) >= 40

    server_key = server.data_dir / "server.key"
    assert stat.S_IMODE(server_key.stat().st_mode) == 0o600
    assert len(server_key.read_bytes()) >= 32

    lines = [line for line in server.log().splitlines() if str(path) in line]
    assert len(lines) == 1, server.log()

    http = requests.Session()
    http.trust_env = False
    resp = http.get(server.url + "/v2/", headers=basic(key_id, secret), timeout=TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    # Some traffic, good and bad, so the log has had every chance to leak the secret.
    http.get(server.url + "/v2/x/manifests/y", headers=basic(key_id, secret + "x"),
             timeout=TIMEOUT)
    http.get(server.url + "/v2/token", headers=basic(key_id, secret), timeout=TIMEOUT)
    run_cli(server.data_dir, "admin", "users", "list")
    run_cli(server.data_dir, "admin", "keys", "list")

    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    server_key_bytes = server_key.read_bytes()
    server.restart()
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    assert server_key.read_bytes() == server_key_bytes
    assert len([line for line in server.log().splitlines() if str(path) in line]) == 1
    resp = http.get(server.url + "/v2/", headers=basic(key_id, secret), timeout=TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    http.close()

    assert secret not in server.log()
    database = b"".join(p.read_bytes() for p in server.data_dir.glob("metadata.db*"))
    assert secret.encode() not in database, "the access key secret is stored in clear"
    assert base64.b64decode(secret) not in database
    listed = run_cli(server.data_dir, "admin", "keys", "list", "--output", "json").stdout
    assert secret not in listed
    users = json.loads(run_cli(server.data_dir, "admin", "users", "list", "--output",
                               "json").stdout)
    assert [u["name"] for u in users] == ["admin"]
    assert "AdministratorAccess" in users[0]["policies"]
    assert "--anonymous" not in server.log()


def test_anonymous_mode_is_open_and_says_so(
        make_registry: Callable[..., RegistryProcess]) -> None:
    server = make_registry(anonymous=True)
    warnings = [line for line in server.log().splitlines()
                if "WARNING" in line and "--anonymous" in line]
    assert len(warnings) == 1, server.log()
    http = requests.Session()
    http.trust_env = False
    setup = Secure(server, http, Key("admin", *server.admin_credentials),
                   ServerKeys((server.data_dir / "server.key").read_bytes()))
    image = make_image("anonymous")
    setup.push_image("open/app", image, "v1", {})
    resp = setup.request("GET", "/v2/open/app/manifests/v1")
    assert resp.status_code == 200 and resp.content == image.manifest, describe(resp)
    resp = setup.request("GET", "/v2/_catalog")
    assert resp.json()["repositories"] == ["open/app"], describe(resp)
    resp = setup.token(None, "repository:open/app:pull,push,delete")
    assert access_of(resp) == [
        {"type": "repository", "name": "open/app", "actions": ["delete", "pull", "push"]}]
    resp = setup.request("DELETE", f"/v2/open/app/manifests/{image.digest}")
    assert resp.status_code == 202, describe(resp)
    http.close()


# --------------------------------------------------------------------------------------------
# The audit log
# --------------------------------------------------------------------------------------------

def test_audit_log_records_failures_denials_and_changes(secure: Secure) -> None:
    repo = f"team/audit-{uuid.uuid4().hex[:8]}"
    reader = secure.users["reader"]
    started = time.time()

    secure.push_image(repo, make_image(repo), "v1")  # allowed, state-changing (admin)
    resp = secure.request("GET", f"/v2/{repo}/manifests/v1", secure.admin.basic)
    assert resp.status_code == 200  # allowed, read-only: not audited
    resp = secure.request("POST", f"/v2/{repo}/blobs/uploads/", reader.basic)
    assert resp.status_code == 403  # denied
    resp = secure.request("DELETE", f"/v2/{repo}/manifests/v1")
    assert resp.status_code == 401  # anonymous: denied with 401
    resp = secure.request("GET", f"/v2/{repo}/manifests/v1", basic(secure.admin.id, "wrong"))
    assert resp.status_code == 401  # authentication failure
    resp = secure.token(basic(reader.id, "wrong"), f"repository:{repo}:pull")
    assert resp.status_code == 401  # authentication failure at the token endpoint

    def events() -> list[dict[str, Any]]:
        return wait_for_audit(secure.data_dir, lambda e: e["outcome"] == "denied"
                              and e["status"] == 401, "--repository", repo)

    events()
    mine = audit_events(secure.data_dir, "--repository", repo)
    summary = sorted((e["principal"], e["action"], e["outcome"], e["status"]) for e in mine)
    assert ("admin", "ecr:InitiateLayerUpload", "allowed", 201) in summary, summary
    assert ("admin", "ecr:PutImage", "allowed", 201) in summary, summary
    assert ("reader", "ecr:InitiateLayerUpload", "denied", 403) in summary, summary
    assert ("-", "ecr:BatchDeleteImage", "denied", 401) in summary, summary
    assert not [e for e in mine if e["action"] == "ecr:BatchGetImage"], \
        "an allowed read-only request was audited"
    for event in mine:
        assert event["repository"] == repo
        assert event["remote"] == "127.0.0.1"
        at = dt.datetime.fromisoformat(event["at"]).timestamp()
        assert started - 5 <= at <= time.time() + 5, event

    failures = wait_for_audit(secure.data_dir, lambda e: e["outcome"] == "unauthenticated",
                              "--outcome", "unauthenticated")
    assert any(e["status"] == 401 and "manifests" in e["action"] for e in failures), failures
    assert any(e["action"] == "GetToken" for e in failures), failures
    assert secure.admin.secret not in json.dumps(audit_events(secure.data_dir))

    by_user = audit_events(secure.data_dir, "--user", "reader", "--outcome", "denied")
    assert by_user and all(e["principal"] == "reader" for e in by_user)
    table = secure.cli("admin", "audit", "--repository", repo).stdout
    assert "OUTCOME" in table and "reader" in table and repo in table


def test_audit_authentication_failure_names_who_and_where(secure: Secure) -> None:
    """The issue: the audit log records each authentication failure (who, what, which
    repository, when). For a wrong secret, "who" is the access key (or user name) presented,
    and the repository is the route's."""
    repo = f"team/audit-who-{uuid.uuid4().hex[:8]}"
    resp = secure.request("GET", f"/v2/{repo}/manifests/v1", basic(secure.admin.id, "wrong"))
    assert resp.status_code == 401
    events = wait_for_audit(secure.data_dir, lambda e: e["outcome"] == "unauthenticated"
                            and repo in (e["action"] + e["repository"]),
                            "--outcome", "unauthenticated")
    event = events[0]
    assert event["repository"] == repo, event
    assert secure.admin.id in (event["key"], event["principal"]), event
