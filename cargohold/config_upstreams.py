"""Settings of the pull-through cache (`[upstreams]`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UpstreamSettings(BaseModel):
    """How cache repositories talk to their upstream registries."""

    model_config = ConfigDict(extra="forbid")

    ptc_tag_ttl: float = Field(
        default=86400, ge=0, description="Seconds a cached tag is served before it is "
        "re-checked upstream with a HEAD (ECR: 24 hours).")
    ptc_max_rules: int = Field(default=50, ge=1, le=1000,
                               description="Most pull-through cache rules (ECR: 50).")
    timeout: float = Field(default=60, gt=0, le=3600,
                           description="Seconds an upstream may stay silent mid-transfer.")
    connect_timeout: float = Field(default=10, gt=0, le=300,
                                   description="Seconds to connect to an upstream.")
    replication_retry_max: float = Field(
        default=300, gt=0, le=86400, description="Longest wait, in seconds, between retries "
        "of a replication that failed (the backoff doubles up to it).")
    replication_max_age_hours: float = Field(
        default=168, gt=0, le=87600, description="A replication still not done this many "
        "hours after its push is given up (FAILED, with the reason).")
    replication_max_backlog: int = Field(
        default=100_000, ge=1, description="Replications kept waiting per destination; the "
        "oldest beyond this are given up (FAILED, with the reason).")
