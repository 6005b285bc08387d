"""The OCI Distribution error registry: each code with its HTTP status and default message."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """Error codes of the distribution spec (and the CNCF registry's additions)."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    TAG_INVALID = (400, "manifest tag did not match URI")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (400, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    RANGE_INVALID = (416, "invalid content range")
    MANIFEST_TOO_LARGE = (413, "manifest exceeds the size limit")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    UNAVAILABLE = (503, "service unavailable")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def wire_code(self) -> str:
        # The CNCF registry reports an oversized manifest as MANIFEST_INVALID with status 413.
        return "MANIFEST_INVALID" if self is ErrorCode.MANIFEST_TOO_LARGE else self.name


class RegistryError(Exception):
    """A request refused with a spec error; the HTTP layer renders it as the JSON envelope."""

    def __init__(self, code: ErrorCode, message: str | None = None, detail: Any = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.wire_code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}
