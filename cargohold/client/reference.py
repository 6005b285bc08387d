"""Parsing ``host[:port]/name[:tag|@digest]`` references, the way docker and oras read them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from cargohold.client.errors import InvalidReference

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
HOSTNAME_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

USAGE = "expected HOST[:PORT]/NAME[:TAG|@DIGEST]"


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``tag`` and ``digest`` may both be unset (a repository)."""

    host: str
    repository: str = ""
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str | None:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag

    @property
    def repo_ref(self) -> str:
        """``host/name`` without tag or digest."""
        return f"{self.host}/{self.repository}"

    def with_tag(self, tag: str | None) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        out = self.repo_ref if self.repository else self.host
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def strip_scheme(text: str) -> str:
    for prefix in ("oci://", "docker://", "https://", "http://"):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def validate_host(host: str, original: str) -> str:
    """Check ``host[:port]``; returns it unchanged."""
    if not host:
        raise InvalidReference(f"invalid reference {original!r}: missing registry host ({USAGE})")
    name, port = host, None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise InvalidReference(f"invalid reference {original!r}: bad IPv6 host {host!r}")
        name, rest = host[1:end], host[end + 1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InvalidReference(
                f"invalid reference {original!r}: bad IPv6 host {host!r}") from None
        if rest:
            if not rest.startswith(":"):
                raise InvalidReference(f"invalid reference {original!r}: bad host {host!r}")
            port = rest[1:]
    elif ":" in host:
        name, port = host.rsplit(":", 1)
        if not HOSTNAME_RE.match(name):
            raise InvalidReference(f"invalid reference {original!r}: bad registry host {name!r}")
    elif not HOSTNAME_RE.match(name):
        raise InvalidReference(f"invalid reference {original!r}: bad registry host {name!r}")
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        raise InvalidReference(f"invalid reference {original!r}: bad port {port!r}")
    return host


def looks_like_host(component: str) -> bool:
    return ("." in component or ":" in component or component == "localhost"
            or component.startswith("["))


def validate_digest(digest: str, original: str | None = None) -> str:
    where = f"invalid reference {original!r}: " if original else ""
    if not DIGEST_RE.match(digest):
        raise InvalidReference(f"{where}malformed digest {digest!r}")
    algorithm, hexpart = digest.split(":", 1)
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise InvalidReference(f"{where}unsupported digest algorithm {algorithm!r}")
    if len(hexpart) != expected or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise InvalidReference(
            f"{where}malformed digest {digest!r} ({algorithm} needs {expected} lowercase hex "
            "characters)")
    return digest


def validate_tag(tag: str, original: str | None = None) -> str:
    if not TAG_RE.match(tag):
        where = f"invalid reference {original!r}: " if original else ""
        raise InvalidReference(
            f"{where}invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128, "
            "not starting with '.' or '-')")
    return tag


def parse_reference(text: str, *, require_repository: bool = True,
                    allow_tag: bool = True) -> Reference:
    """Parse ``[oci://]host[:port]/name[:tag][@digest]``.

    The host is mandatory (there is no implicit Docker Hub): the first path component is the
    registry when it contains a dot or a colon or is ``localhost``.
    """
    original = text
    text = strip_scheme(text.strip())
    if not text:
        raise InvalidReference(f"invalid reference {original!r}: empty ({USAGE})")
    if any(c.isspace() for c in text):
        raise InvalidReference(f"invalid reference {original!r}: contains whitespace")
    host, slash, rest = text.partition("/")
    if not slash:
        try:
            validate_host(host, original)
        except InvalidReference:
            raise InvalidReference(
                f"invalid reference {original!r}: missing registry host ({USAGE})") from None
        if require_repository:
            raise InvalidReference(
                f"invalid reference {original!r}: missing repository name ({USAGE})")
        return Reference(host=host)
    if not looks_like_host(host):
        raise InvalidReference(
            f"invalid reference {original!r}: {host!r} is not a registry host; write the "
            f"registry explicitly ({USAGE}, e.g. localhost:5000/{text})")
    validate_host(host, original)
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        validate_digest(digest, original)
    tag = None
    last = rest.rfind(":")
    if last > rest.rfind("/"):
        rest, tag = rest[:last], rest[last + 1:]
        validate_tag(tag, original)
        if not allow_tag:
            raise InvalidReference(f"invalid reference {original!r}: a tag is not allowed here")
    if not rest:
        if require_repository:
            raise InvalidReference(
                f"invalid reference {original!r}: missing repository name ({USAGE})")
        return Reference(host=host)
    if not NAME_RE.match(rest):
        raise InvalidReference(
            f"invalid reference {original!r}: invalid repository name {rest!r} (lowercase "
            "letters, digits and separators '.', '_', '__', '-', components joined by '/')")
    if len(host) + 1 + len(rest) > 255:
        raise InvalidReference(f"invalid reference {original!r}: name longer than 255 characters")
    return Reference(host=host, repository=rest, tag=tag, digest=digest)


def parse_registry(text: str) -> str:
    """``host[:port]`` (a scheme and a trailing slash are accepted and dropped)."""
    original = text
    text = strip_scheme(text.strip()).rstrip("/")
    if "/" in text:
        raise InvalidReference(f"invalid registry {original!r}: expected HOST[:PORT]")
    return validate_host(text, original)


def is_local_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1 are spoken to over plain HTTP (like docker and oras)."""
    name = host
    if host.startswith("["):
        name = host[1:host.find("]")]
    elif ":" in host:
        name = host.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
