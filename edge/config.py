"""The agent's configuration: one TOML file, any value overridable from the environment.

    wattrail edge --config agent.toml

Environment overrides use the prefix `WATTRAIL_EDGE_` and `__` for nesting, e.g.
`WATTRAIL_EDGE_BROKER__HOST=10.0.0.5` or `WATTRAIL_EDGE_POLL_INTERVAL_S=60`. See
docs/edge-agent.md for a commented example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from protocols.maps import MAP_NAMES
from protocols.topics import check_agent_id


class MeterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a key must not silently default
    id: str = Field(description="the meter's id in the customer archive (serial number)")
    map: str = Field(description=f"register map: one of {', '.join(MAP_NAMES)}")
    transport: Literal["tcp", "rtu", "tls"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    serial_port: str | None = Field(None, description="e.g. /dev/ttyUSB0 (transport = rtu)")
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    unit_id: int = Field(1, ge=0, le=247)

    @field_validator("map")
    @classmethod
    def _known_map(cls, v: str) -> str:
        if v not in MAP_NAMES:
            raise ValueError(f"unknown register map {v!r}; use one of {', '.join(MAP_NAMES)}")
        return v

    @model_validator(mode="after")
    def _rtu_needs_a_port(self) -> MeterConfig:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError(f"meter {self.id}: transport 'rtu' needs serial_port")
        return self

    @property
    def link(self) -> tuple[str, str | int]:
        """Meters on the same link share one connection (an RS-485 bus or a TCP gateway)."""
        if self.transport == "rtu":
            assert self.serial_port is not None
            return ("rtu", self.serial_port)
        return (self.transport, f"{self.host}:{self.port}")


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 8883
    ca: Path
    cert: Path
    key: Path
    keepalive_s: int = 30
    resend_after_s: float = Field(30.0, gt=0, description="resend unconfirmed after this silence")
    session_expiry_s: int = Field(
        3600, ge=0, description="the broker keeps our session (subscriptions, queued acks) "
        "this long after a disconnect (MQTT v5 clean_start=false)")
    backoff_cap_s: float = Field(30.0, gt=0, description="longest wait between reconnects")


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATTRAIL_EDGE_", env_nested_delimiter="__",
                                      extra="forbid")

    agent_id: str
    poll_interval_s: float = Field(15.0, gt=0)
    modbus_timeout_s: float = Field(1.0, gt=0)
    modbus_retries: int = Field(1, ge=0)
    max_gap: int = Field(8, ge=0, description="registers read but unused to merge two reads")
    meters: list[MeterConfig]
    broker: BrokerSettings
    signing_key: Path = Field(description="Ed25519 private key (PEM) from `wattrail pki`")
    key_id: str | None = Field(None, description="hex key id; derived from the key if absent")
    outbox: Path = Path("outbox.db")
    outbox_max_messages: int = Field(100_000, gt=0)
    outbox_max_bytes: int = Field(512 * 1024 * 1024, gt=0)
    health_port: int | None = Field(None, ge=0, le=65535,
                                    description="serve /metrics (Prometheus) on 127.0.0.1 here")
    health_host: str = Field("127.0.0.1", description="address of the metrics endpoint")
    stagger_fraction: float = Field(0.1, ge=0, lt=1, description="spread link start times "
                                    "over this fraction of the poll interval")
    breaker_threshold: int = Field(3, ge=1, description="consecutive comms failures that "
                                   "trip a meter's circuit breaker")
    breaker_base_s: float | None = Field(None, gt=0, description="first wait before probing "
                                         "a tripped meter (default: 2 poll intervals)")
    breaker_cap_s: float = Field(900.0, gt=0, description="longest wait between probes")

    @field_validator("agent_id")
    @classmethod
    def _valid_agent_id(cls, v: str) -> str:
        return check_agent_id(v)

    @model_validator(mode="after")
    def _unique_meters(self) -> AgentConfig:
        seen: set[str] = set()
        for m in self.meters:
            if m.id in seen:
                raise ValueError(f"meter id {m.id!r} appears twice")
            seen.add(m.id)
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment wins over the file, so one image can serve many sites
        return (env_settings, init_settings)


def load_config(path: Path | str) -> AgentConfig:
    """Read a TOML file; relative paths in it are relative to the file's folder."""
    path = Path(path)
    data: dict[str, Any] = tomllib.loads(path.read_text())
    base = path.resolve().parent

    def rel(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and not Path(p).is_absolute() else p

    for key in ("signing_key", "outbox"):
        if key in data:
            data[key] = rel(data[key])
    broker = data.get("broker")
    if isinstance(broker, dict):
        for key in ("ca", "cert", "key"):
            if key in broker:
                broker[key] = rel(broker[key])
    return AgentConfig(**data)
