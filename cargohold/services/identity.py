"""Identities and credentials: users, access keys, temporary registry passwords, tokens.

All of it is synchronous (database and cryptography); the HTTP layer runs it off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cargohold.services.policy import ADMINISTRATOR_POLICY
from cargohold.storage.identity import AccessKeyRecord, IdentityStore, UserRecord
from cargohold.storage.secrets import SecretDecryptionError, ServerKeys

TEMPORARY_PASSWORD_USER = "AWS"
TEMPORARY_PASSWORD_TTL = 12 * 3600
TOKEN_TTL = 15 * 60
DOWNLOAD_URL_TTL = 10 * 60
VALIDITY_TTL = 2.0
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PASSWORD_CACHE_TTL = 60.0


class AuthenticationFailed(Exception):
    """Credentials that are missing, wrong, expired or deactivated (the message says which)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, or the anonymous one (user_id None)."""

    user_id: int | None = None
    name: str | None = None
    access_key_id: str | None = None
    method: str = "anonymous"
    # For a bearer token: repository -> granted scopes ("pull", "push", "delete").
    token_access: dict[str, frozenset[str]] | None = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    id: str
    secret: str
    user: str


class IdentityService:
    def __init__(self, store: IdentityStore, keys: ServerKeys, *, service: str = "cargohold",
                 region: str = "us-east-1") -> None:
        self.store = store
        self.keys = keys
        self.service = service
        self.region = region
        self.hasher = PasswordHasher()
        self._verified: OrderedDict[bytes, float] = OrderedDict()
        self._validity: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    @property
    def registry_id(self) -> str:
        return self.keys.registry_id

    def user_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.registry_id}:user/{name}"

    # -- administration --------------------------------------------------------------------

    def create_user(self, name: str, *, password: str | None = None,
                    administrator: bool = False) -> UserRecord:
        password_hash = self.hasher.hash(password) if password else None
        user = self.store.create_user(name, password_hash)
        if administrator:
            self.store.put_user_policy(name, "AdministratorAccess", ADMINISTRATOR_POLICY)
        return user

    def create_access_key(self, user: str) -> NewAccessKey:
        """A new key; its secret is returned once and kept only encrypted."""
        key_id = "AKCH" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        secret = base64.b64encode(secrets.token_bytes(30)).decode()
        self.store.create_access_key(user, key_id, self.keys.seal(secret))
        return NewAccessKey(key_id, secret, user)

    def access_key_secret(self, record: AccessKeyRecord) -> str:
        return self.keys.unseal(record.secret_ciphertext)

    # -- credentials -----------------------------------------------------------------------

    def authenticate_basic(self, username: str, password: str) -> Principal:
        """Check a user/password pair: access key + secret, `AWS` + temporary password, or
        user name + password."""
        if username == TEMPORARY_PASSWORD_USER:
            return self.verify_temporary_password(password)
        record = self.store.get_access_key(username) if username.startswith("AKCH") else None
        if record is not None:
            return self._verify_access_key(record, password)
        return self._verify_user_password(username, password)

    def active_key(self, key_id: str) -> AccessKeyRecord:
        record = self.store.get_access_key(key_id)
        if record is None:
            raise AuthenticationFailed("unknown access key")
        if record.status != "Active":
            raise AuthenticationFailed("access key is not active")
        return record

    def _verify_access_key(self, record: AccessKeyRecord, secret: str) -> Principal:
        try:
            expected = self.keys.unseal(record.secret_ciphertext)
        except SecretDecryptionError:
            raise AuthenticationFailed("access key cannot be verified") from None
        # The secret first: a refusal must not tell a guesser that a key exists.
        if not hmac.compare_digest(expected.encode(), secret.encode()):
            raise AuthenticationFailed("invalid credentials")
        if record.status != "Active":
            raise AuthenticationFailed("access key is not active")
        return Principal(record.user_id, record.user_name, record.id, "access-key")

    def _verify_user_password(self, name: str, password: str) -> Principal:
        found = self.store.password_hash(name)
        if found is None:
            # Same cost as a real check, so timing does not reveal which users exist.
            self.hasher.hash(password)
            raise AuthenticationFailed("invalid credentials")
        user, stored = found
        fingerprint = hashlib.sha256(
            b"\0".join([name.encode(), password.encode(), stored.encode()])).digest()
        if not self._recently_verified(fingerprint):
            try:
                self.hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                raise AuthenticationFailed("invalid credentials") from None
            self._remember_verified(fingerprint)
        return Principal(user.id, user.name, None, "password")

    def _recently_verified(self, fingerprint: bytes) -> bool:
        with self._lock:
            expires = self._verified.get(fingerprint)
            return expires is not None and expires > time.monotonic()

    def _remember_verified(self, fingerprint: bytes) -> None:
        with self._lock:
            self._verified[fingerprint] = time.monotonic() + _PASSWORD_CACHE_TTL
            while len(self._verified) > 4096:
                self._verified.popitem(last=False)

    # -- temporary registry passwords ------------------------------------------------------

    def mint_temporary_password(self, key_id: str) -> tuple[str, int]:
        """A 12-hour registry password for an active access key, like ECR's login password."""
        self.active_key(key_id)
        expires = int(time.time()) + TEMPORARY_PASSWORD_TTL
        password = jwt.encode({"k": key_id, "exp": expires, "p": "registry-password"},
                              self.keys.password_key, algorithm="HS256")
        return password, expires

    def verify_temporary_password(self, password: str) -> Principal:
        try:
            claims = jwt.decode(password, self.keys.password_key, algorithms=["HS256"],
                                options={"require": ["exp", "k"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("temporary password has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("invalid credentials") from None
        if claims.get("p") != "registry-password":
            raise AuthenticationFailed("invalid credentials")
        record = self.active_key(str(claims["k"]))
        return Principal(record.user_id, record.user_name, record.id, "temporary-password")

    # -- presigned blob downloads (ECR GetDownloadUrlForLayer) -----------------------------

    def presign_blob(self, repository: str, digest: str) -> str:
        """Query parameters that let anyone fetch one blob for a few minutes."""
        expires = int(time.time()) + DOWNLOAD_URL_TTL
        signature = self._blob_signature(repository, digest, expires)
        return f"X-Cargohold-Expires={expires}&X-Cargohold-Signature={signature}"

    def verify_presigned_blob(self, repository: str, digest: str, expires: str,
                              signature: str) -> Principal:
        if not expires.isdigit() or int(expires) < time.time():
            raise AuthenticationFailed("download URL has expired")
        expected = self._blob_signature(repository, digest, int(expires))
        if not hmac.compare_digest(expected, signature):
            raise AuthenticationFailed("invalid download URL signature")
        return Principal(method="presigned-url",
                         token_access={repository: frozenset({"pull"})})

    def _blob_signature(self, repository: str, digest: str, expires: int) -> str:
        message = f"{repository}\n{digest}\n{expires}".encode()
        return hmac.new(self.keys.download_key, message, hashlib.sha256).hexdigest()

    # -- registry tokens -------------------------------------------------------------------

    def issue_token(self, principal: Principal, service: str,
                    access: list[dict[str, Any]]) -> tuple[str, int]:
        """A short-lived signed token carrying exactly the granted access."""
        now = int(time.time())
        claims = {
            "iss": self.service, "aud": service, "sub": principal.name or "",
            "uid": principal.user_id, "akid": principal.access_key_id,
            "iat": now, "nbf": now - 5, "exp": now + TOKEN_TTL, "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self.keys.token_key, algorithm="HS256"), TOKEN_TTL

    def cached_validity(self, principal: Principal) -> bool | None:
        """Whether a token's key (or user) was still in good standing a moment ago; None when
        that is not known, and `check_validity` must ask the database."""
        if principal.user_id is None:
            return True
        entry = self._validity.get(_validity_key(principal))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def check_validity(self, principal: Principal) -> bool:
        """Is the token's access key still active (or its user still there)? Cached briefly,
        so deactivating a key or deleting a user ends its tokens within seconds."""
        if principal.access_key_id is not None:
            record = self.store.get_access_key(principal.access_key_id)
            valid = (record is not None and record.status == "Active"
                     and record.user_id == principal.user_id)
        else:
            valid = self.store.user_exists(principal.user_id or 0)
        with self._lock:
            self._validity[_validity_key(principal)] = (valid, time.monotonic() + VALIDITY_TTL)
            if len(self._validity) > 10_000:
                self._validity.clear()
        return valid

    def verify_token(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self.keys.token_key, algorithms=["HS256"],
                                audience=self.service, issuer=self.service,
                                options={"require": ["exp", "iat", "access"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("invalid token") from None
        granted: dict[str, frozenset[str]] = {}
        for entry in claims.get("access") or []:
            if isinstance(entry, dict) and entry.get("type") == "repository":
                granted[str(entry.get("name"))] = frozenset(entry.get("actions") or [])
        user_id = claims.get("uid")
        return Principal(user_id if isinstance(user_id, int) else None,
                         claims.get("sub") or None, claims.get("akid"), "token", granted)


def _validity_key(principal: Principal) -> str:
    return principal.access_key_id or f"user:{principal.user_id}"
