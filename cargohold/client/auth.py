"""Credentials in the Docker config file format, and the Basic/Bearer challenge handshake.

The file is ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``), the same one
docker, skopeo (as a fallback), oras and helm (via oras) read: ``auths.<host>.auth`` holds
``base64(user:password)``; ``credHelpers``/``credsStore`` name ``docker-credential-<helper>``
programs, which are used when configured.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.client.errors import ClientError

HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token ("<token>" user of a credential helper)
    registry_token: str = ""  # a bearer token to send as is

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


def default_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _normalise_key(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``; ``host:5000`` stays."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]


class DockerConfig:
    """Reads and writes the credentials parts of a Docker config file, keeping the rest."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_config_path()

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ClientError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClientError(f"{self.path} is not valid JSON: {exc.msg} (line {exc.lineno})"
                              ) from None
        if not isinstance(data, dict):
            raise ClientError(f"{self.path} is not a JSON object")
        return data

    def save(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config.json.")
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(data, handle, indent="\t")
                    handle.write("\n")
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise ClientError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    # ---------------------------------------------------------------- helpers

    def helper_for(self, host: str, data: dict[str, Any] | None = None) -> str | None:
        data = self.load() if data is None else data
        helpers = data.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _normalise_key(key) == host and helper:
                    return str(helper)
        store = data.get("credsStore")
        return str(store) if store else None

    # ---------------------------------------------------------------- credentials

    def get(self, host: str) -> Credentials:
        data = self.load()
        helper = self.helper_for(host, data)
        if helper:
            creds = helper_get(helper, host)
            if creds is not None:
                return creds
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            return Credentials()
        for key, entry in auths.items():
            if _normalise_key(key) != host or not isinstance(entry, dict):
                continue
            return _entry_credentials(entry, self.path)
        return Credentials()

    def store(self, host: str, creds: Credentials) -> str:
        """Save credentials; returns where they went (the file or the helper's name)."""
        data = self.load()
        helper = self.helper_for(host, data)
        if helper:
            helper_store(helper, host, creds)
            return f"docker-credential-{helper}"
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise ClientError(f"{self.path}: 'auths' is not an object")
        for key in [k for k in auths if _normalise_key(k) == host and k != host]:
            del auths[key]
        entry: dict[str, str] = {}
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
            if creds.username:
                entry["auth"] = _b64(f"{creds.username}:")
        else:
            entry["auth"] = _b64(f"{creds.username}:{creds.password}")
        auths[host] = entry
        self.save(data)
        return str(self.path)

    def erase(self, host: str) -> bool:
        """Remove stored credentials for host; True if there were any."""
        data = self.load()
        helper = self.helper_for(host, data)
        removed = False
        if helper:
            removed = helper_erase(helper, host)
        auths = data.get("auths")
        if isinstance(auths, dict):
            keys = [k for k in auths if _normalise_key(k) == host]
            for key in keys:
                del auths[key]
            if keys:
                self.save(data)
                removed = True
        return removed


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _entry_credentials(entry: dict[str, Any], path: Path) -> Credentials:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    auth = entry.get("auth")
    if auth:
        try:
            decoded = base64.b64decode(str(auth), validate=False).decode()
        except (ValueError, UnicodeDecodeError):
            raise ClientError(f"{path}: an 'auth' entry is not valid base64") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ClientError(f"{path}: an 'auth' entry is not base64 of 'user:password'")
    return Credentials(username=username, password=password,
                       identity_token=str(entry.get("identitytoken") or ""),
                       registry_token=str(entry.get("registrytoken") or ""))


def _run_helper(helper: str, action: str, payload: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise ClientError(f"credential helper docker-credential-{helper} is configured but not "
                          "installed")
    try:
        return subprocess.run([program, action], input=payload, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ClientError(f"docker-credential-{helper} {action} timed out") from None


def helper_get(helper: str, host: str) -> Credentials | None:
    result = _run_helper(helper, "get", host)
    if result.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ClientError(f"docker-credential-{helper} get returned invalid JSON") from None
    username, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=username, password=secret)


def helper_store(helper: str, host: str, creds: Credentials) -> None:
    username = "<token>" if creds.identity_token else creds.username
    secret = creds.identity_token or creds.password
    payload = json.dumps({"ServerURL": host, "Username": username, "Secret": secret})
    result = _run_helper(helper, "store", payload)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise ClientError(f"docker-credential-{helper} store failed: "
                          f"{message[0] if message else 'exit code ' + str(result.returncode)}")


def helper_erase(helper: str, host: str) -> bool:
    return _run_helper(helper, "erase", host).returncode == 0


# -------------------------------------------------------------------------------- challenges

@dataclass
class Challenge:
    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> list[str]:
        scope = self.params.get("scope", "")
        return [s for s in scope.split(" ") if s]


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHALLENGE_START = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^\s,]*))\s*")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header (RFC 7235), which may hold several challenges."""
    challenges: list[Challenge] = []
    pos = 0
    current: Challenge | None = None
    length = len(header)
    while pos < length:
        while pos < length and header[pos] in " ,":
            pos += 1
        if pos >= length:
            break
        param = _PARAM.match(header, pos)
        if param and current is not None:
            value = param.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            current.params[param.group(1).lower()] = value or ""
            pos = param.end()
            continue
        start = _CHALLENGE_START.match(header, pos)
        if not start:
            break
        current = Challenge(scheme=start.group(1).lower())
        challenges.append(current)
        pos = start.end()
    return challenges


def basic_header(creds: Credentials) -> str:
    return "Basic " + _b64(f"{creds.username}:{creds.password}")


def merge_scopes(*groups: list[str]) -> list[str]:
    """Union of scopes, merging actions of the same resource (``repository:x:pull,push``)."""
    merged: dict[str, list[str]] = {}
    order: list[str] = []
    for group in groups:
        for scope in group:
            resource, _, actions = scope.rpartition(":")
            if not resource:
                resource, actions = scope, ""
            if resource not in merged:
                merged[resource] = []
                order.append(resource)
            for action in actions.split(","):
                if action and action not in merged[resource]:
                    merged[resource].append(action)
    return [f"{r}:{','.join(sorted(merged[r]))}" if merged[r] else r for r in order]


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"
