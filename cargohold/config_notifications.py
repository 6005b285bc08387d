"""Settings of event notifications (`[notifications]`, `[[notifications.endpoints]]`).

Checked when the settings load, so a bad URL, an unknown event name or format, or two
endpoints with one name stop `cargohold serve` at start-up with a message naming the field.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EventName = Literal["push", "pull", "delete", "tag", "lifecycle"]


class NotificationEndpoint(BaseModel):
    """One receiver of registry events."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$",
                             description="Label in metrics and the outbox; default: host/path.")
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=5.0, gt=0, le=300, description="Seconds per attempt.")
    events: list[EventName] = Field(default_factory=lambda: ["push", "delete", "tag"])
    repositories: list[str] = Field(default_factory=list,
                                    description="fnmatch globs; empty means every repository.")
    media_types: list[str] = Field(default_factory=list,
                                   description="Manifest media types or artifact types "
                                   "(globs); empty means all.")
    format: Literal["distribution", "ecr"] = "distribution"
    secret: str | None = Field(default=None, min_length=16,
                               description="HMAC-SHA256 key for the X-Cargohold-Signature "
                               "header.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"notification endpoint URL {url!r} is not an http(s) URL "
                             "with a host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"notification endpoint URL {url!r} has an invalid port") from None
        return url

    @property
    def label(self) -> str:
        """The endpoint's name, or host[:port]/path of its URL (never its credentials)."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return (host + parts.path)[:255]


class NotificationSettings(BaseModel):
    """Where events go, and how long undeliverable ones are kept trying."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[NotificationEndpoint] = Field(default_factory=list)
    max_age_hours: float = Field(default=24, gt=0,
                                 description="Undelivered events older than this expire.")
    max_backlog: int = Field(default=10_000, ge=1,
                             description="Pending deliveries kept per endpoint; the oldest "
                             "beyond this are dropped.")
    retention_hours: float = Field(default=168, gt=0,
                                   description="Settled events stay listable this long.")
    backoff_initial: float = Field(default=1.0, gt=0, description="First retry delay (s).")
    backoff_max: float = Field(default=300.0, gt=0, description="Longest retry delay (s).")

    @model_validator(mode="after")
    def _unique_labels(self) -> NotificationSettings:
        labels = [endpoint.label for endpoint in self.endpoints]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"notification endpoints {duplicates} share a name: give each "
                             "a distinct `name`")
        return self
