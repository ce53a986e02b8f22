"""What a review service instance is pointed at; the CLI fills it from options and environment."""

from __future__ import annotations

import socket
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from pipeline.review.claims import DEFAULT_CLAIM_S
from pipeline.review.db import DEFAULT_REVIEW_DB
from pipeline.review.local_time import DEFAULT_DISPLAY_TIMEZONE
from pipeline.review.map_tiles import check_tile_template


class ReviewSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    db_path: Path = Field(DEFAULT_REVIEW_DB, description="The review store (SQLite, WAL).")
    audit_key: Path | None = Field(
        None, description="Ed25519 key that signs the audit chain's head, made (mode 0600) if absent; None: "
                          "audit-signing.key beside the database. Better on storage the database's writers lack.")
    signed_heads: Path | None = Field(
        None, description="Append-only JSON lines of signed heads; None: audit-heads.jsonl beside the key.")
    queue_url: str | None = Field(
        None, description="Case queue URL (open_queue's forms); None: SQLite at var/queue/cases.sqlite3.")
    evidence_url: str | None = Field(
        None, description="Evidence store (open_evidence_store's forms); None: S3_* environment, else var/evidence.")
    streams_dir: Path | None = Field(None, description="Folder of camera files (*.yaml) for names and locations.")
    workflow_config: Path | None = Field(
        None, description="The 处置流程's table (case number prefix, units, hours per violation kind); None: the "
                          "packaged pipeline/review/workflow.yaml.")
    metrics_urls: tuple[HttpUrl, ...] = Field((), description="Workers' Prometheus /metrics endpoints.")
    consumer: str = Field(default_factory=lambda: f"review-service-{socket.gethostname()}",
                          description="This instance's consumer name in the queue's review group.")
    intake_block_s: float = Field(1.0, gt=0, le=30, description="How long one queue read waits for new cases.")
    intake_max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between tries of an unreachable queue.")
    session_ttl_s: float = Field(12 * 3600, gt=0, description="A login lasts this long (one shift).")
    session_idle_timeout_s: float = Field(
        30 * 60, gt=0, description="A login also ends after this long without a request (a screen left unlocked).")
    claim_s: float = Field(
        DEFAULT_CLAIM_S, gt=0, le=8 * 3600,
        description="An officer's claim on a case (认领) lasts this long unless renewed, released or decided.")
    duplicate_window_h: float = Field(
        6.0, gt=0, le=7 * 24, description="重复: cases confirmed this many hours either side of a case, at its camera "
                                          "and zone or with its plate, are suggested as what it repeats.")
    evidence_url_expiry_s: int = Field(300, ge=1, le=3600, description="Presigned S3 evidence URLs expire after this.")
    metrics_timeout_s: float = Field(1.5, gt=0, description="How long the camera list waits for a worker.")
    secure_cookies: bool = Field(False, description="Mark the session cookie Secure (set when served over HTTPS).")
    display_timezone: ZoneInfo = Field(
        ZoneInfo(DEFAULT_DISPLAY_TIMEZONE),
        description="IANA time zone of the district: times are shown on its clock, and a time typed without an "
                    "offset (a list filter, a link) is read on it.")
    map_tiles: str | None = Field(
        None, description="A tile server's URL template ({z}/{x}/{y}, Web Mercator) drawn under the map page; None: "
                          "no tiles, the map needs nothing from outside (its one origin is allowed in the CSP).")
    map_attribution: str | None = Field(None, max_length=200, description="The tiles' credit line, shown on the map.")

    @field_validator("map_tiles")
    @classmethod
    def _tile_template(cls, template: str | None) -> str | None:
        return check_tile_template(template) if template else None
