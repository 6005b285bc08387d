"""Settings: one object, read from a TOML file with `CARGOHOLD_*` environment overrides.

Precedence, highest first: command-line options, environment, the TOML file, defaults.
Nested keys in the environment use a double underscore: `CARGOHOLD_BLOB_STORE__PATH=/srv/blobs`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cargohold.config_notifications import NotificationSettings
from cargohold.config_upstreams import UpstreamSettings
from cargohold.wire.duration import parse_duration

# Seconds, written as a number or as 30s, 10m, 1h, 7d.
Duration = Annotated[float, BeforeValidator(parse_duration)]


class BlobStoreSettings(BaseModel):
    """Which blob store holds the bytes, and its parameters."""

    backend: Literal["filesystem", "s3"] = "filesystem"
    path: Path | None = Field(
        default=None, description="Root of the filesystem store; default <data_dir>/blobs.")
    direct_writes: bool = Field(
        default=True,
        description="Filesystem store: large upload bodies are written past the page cache "
                    "(O_DIRECT), falling back where the filesystem refuses; false writes "
                    "everything through it.")
    # The S3 backend (any S3-compatible store). Credentials left out come from the standard
    # AWS chain: environment, shared credentials file, instance role.
    bucket: str | None = Field(default=None, description="S3 bucket (backend = \"s3\").")
    prefix: str = Field(default="", description="Key prefix inside the bucket.")
    endpoint_url: str | None = Field(default=None, description="A non-AWS S3 endpoint.")
    region: str | None = Field(default=None, description="S3 region; default from AWS config.")
    access_key_id: str | None = None
    secret_access_key: str | None = Field(default=None, repr=False)
    addressing_style: Literal["path", "virtual", "auto"] = "auto"
    redirect: bool = Field(
        default=False, description="Blob GETs answer 307 to a short-lived presigned S3 URL.")
    redirect_expiry_seconds: int = Field(default=600, ge=1, le=7 * 24 * 3600)
    # Large S3 reads from a slow (distant) store can go on as parallel ranged GETs
    # (storage/s3_parts.py). Off by default: from a store close by, one GET is as fast and
    # parts cost CPU; for AWS S3 (about 100 MB/s per GET) try 100.
    read_parallel_below: float = Field(
        default=0.0, ge=0,
        description="MB/s: an S3 read whose first part streams slower than this goes on as "
                    "parallel ranged GETs; 0 (default): always one GET.")
    read_part_size: int = Field(
        default=8 * 1024 * 1024, ge=256 * 1024,
        description="Bytes per ranged GET when a large S3 object is read in parallel parts.")
    read_window: int = Field(
        default=4, ge=1, le=64,
        description="Parts of one S3 read in flight at once; 1 reads with a single GET.")
    read_budget: int = Field(
        default=128 * 1024 * 1024, ge=0,
        description="Bytes each worker process may read ahead in parts, across all reads; "
                    "a read that finds it used up falls back to a single GET.")


class Settings(BaseSettings):
    """Everything a Cargohold node needs to run."""

    model_config = SettingsConfigDict(env_prefix="CARGOHOLD_", env_nested_delimiter="__",
                                      extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: min(os.cpu_count() or 1, 64), ge=1, le=64,
                         description="Worker processes; default: the number of CPUs.")
    data_dir: Path = Path("cargohold-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/metadata.db.")
    blob_store: BlobStoreSettings = BlobStoreSettings()
    max_manifest_size: int = Field(default=4 * 1024 * 1024, ge=1024)
    create_on_push: bool = Field(
        default=True, description="Pushing to an unknown repository creates it.")
    anonymous: bool = Field(
        default=False, description="Let anyone do anything, unauthenticated (local experiments).")
    secret_key: str | None = Field(
        default=None, description="Base64 server key shared by all nodes; default: "
        "<data_dir>/server.key, created on first start.")
    region: str = Field(default="us-east-1", description="The region named in ARNs.")
    service_name: str = Field(default="cargohold", description="Registry token service name.")
    public_url: str | None = Field(
        default=None, description="External base URL (behind a proxy); default: from requests.")
    upload_session_ttl_hours: float = Field(
        default=168, gt=0, description="Upload sessions idle this long are purged.")
    gc_interval: Duration = Field(
        default=3600.0, description="Seconds between in-server garbage collections; 0: never.")
    gc_grace: Duration = Field(
        default=3600.0, description="Unreferenced blobs and links younger than this survive GC.")
    lifecycle_interval: Duration = Field(
        default=86400.0, description="Seconds between lifecycle-policy runs; 0: never.")
    access_log: bool = False
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Server and access log lines as text or JSON objects.")
    metrics: bool = Field(default=True, description="Serve Prometheus metrics on /metrics.")
    metrics_token: str | None = Field(
        default=None, min_length=16, description="Require `Authorization: Bearer <token>` "
        "on /metrics.")
    notifications: NotificationSettings = NotificationSettings()
    upstreams: UpstreamSettings = UpstreamSettings()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'metadata.db'}"

    @property
    def resolved_blob_path(self) -> Path:
        return (self.blob_store.path or self.data_dir / "blobs").resolve()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a TOML file, the environment and explicit overrides."""

    class _Sourced(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings.model_validate(_Sourced(**given).model_dump())
