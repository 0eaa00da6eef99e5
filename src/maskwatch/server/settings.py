"""The server's one settings object, read from `MASKWATCH_*` environment variables.

Built once at the edge (`maskwatch serve` or `create_app`) and passed down;
nothing below reads the environment. Every field has a default, bounds and a
description so `maskwatch serve --help` and the README can quote them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_workers() -> int:
    """One inference worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Server settings; `MASKWATCH_API_KEY=...` sets `api_key`, and so on."""

    model_config = SettingsConfigDict(env_prefix="MASKWATCH_", extra="forbid")

    data_dir: Path = Field(Path("maskwatch-data"),
                           description="cameras.json and the SQLite event store live here")
    api_key: str | None = Field(None, min_length=8,
                                description="when set, every route but /v1/health needs it (X-API-Key header, "
                                            "Authorization: Bearer, or ?api_key= for <img> streams)")
    workers: int = Field(default_factory=default_workers, ge=1, le=64,
                         description="inference threads, each with its own detector and classifier")
    queue_size: int = Field(32, ge=0, le=1024,
                            description="images waiting for a worker; beyond it requests get 503 + Retry-After")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body (413 beyond)")
    max_pixels: int = Field(40_000_000, ge=10_000, description="largest image, width x height (413 beyond)")
    max_batch: int = Field(16, ge=1, le=256, description="most images in one /v1/detect/batch request")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="origins allowed to call the API from a browser (none: CORS off)")
    snapshots: bool = Field(False, description="store a JPEG of the face with each camera alert (a picture of a "
                                               "person: off by default)")
    alert_webhooks: list[str] = Field(default_factory=list,
                                      description="http(s) URLs every camera alert is POSTed to as JSON, with "
                                                  "retries from the event store's outbox (part 3's webhook sink)")
    snapshot_retention_hours: float = Field(24.0, gt=0, description="snapshots older than this are deleted")
    max_cameras: int = Field(16, ge=0, le=256, description="cameras the server runs at most")
    allow_webcams: bool = Field(True, description="accept a local webcam index (0, 1, ...) as a camera source")
    stream_fps: float = Field(10.0, gt=0, le=60, description="annotated frames per second encoded for live views")
    bucket_seconds: float = Field(60.0, ge=1, description="width of a camera's compliance-over-time buckets")
    history_buckets: int = Field(60, ge=1, le=10_000, description="compliance buckets kept per camera")
    threshold: float = Field(0.7, ge=0, le=1, description="p(mask) a face needs to count as properly masked")
    retry_after: int = Field(1, ge=1, description="seconds a client is told to wait when the queue is full")

    @field_validator("alert_webhooks")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.lower().startswith(("http://", "https://")):
                raise ValueError(f"alert webhook {url!r} is not an http(s) URL")
        return urls
