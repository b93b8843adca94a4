"""The API's settings: one class, read from `WATTRAIL_*` environment variables (and a `.env`
file when present), so a deployment configures everything in one place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATTRAIL_API_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # The one DSN every cloud process shares; named without the API prefix on purpose.
    dsn: str = Field(default="postgresql://127.0.0.1/wattrail",
                     validation_alias="WATTRAIL_DSN")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    # How long a request waits for a connection before it is answered 503 (DB down or saturated).
    pool_timeout_s: float = Field(default=10.0, gt=0)
    # A query the planner gets wrong must not hold a connection for minutes; answered as 503.
    statement_timeout_ms: int = Field(default=15_000, ge=100)

    # Paging: a client asks for at most this many rows per request, and gets a cursor for more.
    default_page_size: int = Field(default=100, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    max_map_features: int = Field(default=10_000, ge=1)

    # Longest time range one readings request may cover, per resolution: about 100k rows.
    max_range_raw: timedelta = timedelta(days=31)
    max_range_15min: timedelta = timedelta(days=366)
    max_range_hour: timedelta = timedelta(days=3 * 366)
    max_range_day: timedelta = timedelta(days=20 * 366)
    max_range_report: timedelta = timedelta(days=3 * 366)

    # The audit export holds every envelope of the period with its inclusion proof; past this
    # many the client is asked to split the period.
    export_max_envelopes: int = Field(default=5_000, ge=1)
    max_gap_ranges: int = Field(default=1_000, ge=1)

    # Per-token token bucket: `rate_limit_per_s` requests a second sustained, bursts of
    # `rate_limit_burst`. In process: with N API workers a token gets N times this.
    rate_limit_per_s: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=60, ge=1)

    # No request body larger than this reaches a route (413): the grid file of the topology
    # import is the only large one.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    # Files an auditor needs to check an export offline; included in it when set.
    ca_cert: Path | None = Field(default=None, validation_alias="WATTRAIL_CA_CERT")
    log_public_key: Path | None = Field(default=None, validation_alias="WATTRAIL_LOG_PUBLIC_KEY")
