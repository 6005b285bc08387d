"""Verifying AWS Signature Version 4 on ECR API requests, with botocore's own signer.

The canonical request is rebuilt from what arrived (only the headers the client signed), signed
again with the caller's secret, and the two signatures compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cargohold.wire.ecr import EcrError

MAX_SKEW = dt.timedelta(minutes=15)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    host: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def _error(name: str, message: str, status: int = 403) -> EcrError:
    return EcrError(name, message, status)


def verify(request: SignedRequest, secret_for: Callable[[str], str | None], *,
           service: str = "ecr", now: dt.datetime | None = None) -> str:
    """Check the signature; return the access key id that signed. `secret_for` returns the
    secret of an active key, or None for an unknown or inactive one."""
    received = {name.lower(): value for name, value in request.headers.items()}
    header = received.get("authorization")
    if not header:
        raise _error("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.match(header)
    if not match:
        raise _error("IncompleteSignatureException",
                     "Authorization header requires 'Credential', 'SignedHeaders' and "
                     "'Signature' (AWS4-HMAC-SHA256)", 400)
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise _error("IncompleteSignatureException", "malformed Credential", 400)
    key_id, date, region, scope_service, _ = parts
    if scope_service != service:
        raise _error("InvalidSignatureException",
                     f"Credential should be scoped to correct service: '{service}'")
    signed = match["signed"].split(";")
    if "host" not in signed:
        raise _error("InvalidSignatureException", "the host header must be signed")
    amz_date = received.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise _error("IncompleteSignatureException", "missing or malformed X-Amz-Date",
                     400) from None
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > MAX_SKEW:
        raise _error("InvalidSignatureException",
                     f"Signature expired: {amz_date} is now earlier than "
                     f"{(current - MAX_SKEW):%Y%m%dT%H%M%SZ} ({current:%Y%m%dT%H%M%SZ} - 15 min.)")
    if date != amz_date[:8]:
        raise _error("InvalidSignatureException", "credential date does not match X-Amz-Date")
    secret = secret_for(key_id)
    if secret is None:
        raise _error("UnrecognizedClientException",
                     "The security token included in the request is invalid.")
    headers = {}
    for name in signed:
        value = request.host if name == "host" else received.get(name)
        if value is None:
            raise _error("InvalidSignatureException", f"signed header {name!r} is missing")
        headers[name] = value
    url = f"http://{request.host}{request.path}" + (f"?{request.query}" if request.query else "")
    # botocore on the first signed request: 7 MiB a process that never serves one
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws_request = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _error("InvalidSignatureException",
                     "The request signature we calculated does not match the signature you "
                     "provided. Check your AWS Secret Access Key and signing method.")
    return key_id
