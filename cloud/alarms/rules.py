"""Alarm rules as data: what condition, on which meters, for how long, how severe.

A rule file is TOML (`wattrail alarms rules import rules.toml`), one `[[rule]]` table per rule:

    [[rule]]
    id = "voltage-band"           # stable: alarms and notifications name it
    kind = "voltage_band"         # one of KINDS
    severity = "major"            # critical | major | minor | warning
    duration_s = 600              # the condition must hold this long before an alarm is raised
    clear_after_s = 900           # and be absent this long before it clears by the data
    low_v = 207.0                 # EN 50160: 230 V +- 10 % (10-min means; we judge readings)
    high_v = 253.0
    region = "R1"                 # optional scope: one region ...
    customer_class = "industrial" # ... and/or one customer class (customer meters only)

Kinds and their parameters:

    tamper              the meter's own flags (`flags`: names of protocols.reading.MeterStatus
                        bits, default cover_open, magnetic_field, reverse_current,
                        register_rollback); raised on the first reading that carries one
    export_without_pv   export register rising by more than `export_wh` on a customer with no
                        PV on record
    voltage_band        any phase voltage outside [low_v, high_v] for duration_s
    overload            a balance meter's apparent power above `ratio` x its transformer's
                        rating for duration_s
    consumption_collapse a large or special customer's active power below `ratio` x its own
                        running median (the last `baseline_n` readings) for duration_s

Thresholds are the rule file's, never fitted here: they are policy (EN 50160, a transformer's
rating, what a utility calls large), and the rule says which it uses.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocols.reading import MeterStatus

KINDS = ("tamper", "export_without_pv", "voltage_band", "overload", "consumption_collapse")
SEVERITIES = ("critical", "major", "minor", "warning")
DEFAULT_TAMPER = ("cover_open", "magnetic_field", "reverse_current", "register_rollback")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["tamper", "export_without_pv", "voltage_band", "overload", "consumption_collapse"]
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    enabled: bool = True
    region: str | None = None
    customer_class: str | None = None
    duration_s: int = Field(default=0, ge=0, le=7 * 86400)
    clear_after_s: int = Field(default=900, ge=0, le=7 * 86400)
    flags: tuple[str, ...] = DEFAULT_TAMPER
    export_wh: float = Field(default=100.0, ge=0)
    low_v: float = Field(default=207.0, gt=0)
    high_v: float = Field(default=253.0, gt=0)
    ratio: float = Field(default=1.0, gt=0)
    baseline_n: int = Field(default=96, ge=4, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.low_v >= self.high_v:
            raise ValueError(f"low_v ({self.low_v}) must be below high_v ({self.high_v})")
        bad = [f for f in self.flags if f.upper() not in MeterStatus.__members__]
        if bad:
            names = ", ".join(n.lower() for n in MeterStatus.__members__ if n != "NONE")
            raise ValueError(f"unknown flag(s) {', '.join(bad)}; use {names}")
        if self.kind == "consumption_collapse" and self.ratio >= 1:
            raise ValueError("consumption_collapse needs ratio < 1 (a share of the customer's median)")
        return self

    @property
    def flag_mask(self) -> int:
        m = 0
        for f in self.flags:
            m |= int(MeterStatus[f.upper()])
        return m


def default_rules() -> list[Rule]:
    """What a new installation starts with (docs/alarms.md)."""
    return [
        Rule(id="tamper", kind="tamper", severity="critical", clear_after_s=3600),
        Rule(id="export-without-pv", kind="export_without_pv", severity="major", clear_after_s=86400),
        Rule(id="voltage-band", kind="voltage_band", severity="major", duration_s=600),
        Rule(id="transformer-overload", kind="overload", severity="major", duration_s=1800, ratio=1.0),
        Rule(id="large-customer-collapse", kind="consumption_collapse", severity="minor",
             duration_s=3600, ratio=0.2, clear_after_s=3600),
    ]


class RuleFileError(ValueError):
    """The rule file cannot be used; the message names the rule and the field to fix."""


def parse_rules(doc: dict[str, Any], source: str = "rules") -> list[Rule]:
    tables = doc.get("rule")
    if not isinstance(tables, list) or not tables:
        raise RuleFileError(f"{source}: no [[rule]] tables (see docs/alarms.md for the format)")
    out: list[Rule] = []
    seen: set[str] = set()
    for n, t in enumerate(tables, start=1):
        try:
            r = Rule.model_validate(t)
        except ValidationError as exc:
            where = t.get("id", f"#{n}") if isinstance(t, dict) else f"#{n}"
            msgs = "; ".join(
                (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                + str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise RuleFileError(f"{source}: rule {where}: {msgs}") from exc
        if r.id in seen:
            raise RuleFileError(f"{source}: rule id {r.id!r} appears twice; ids must be unique")
        seen.add(r.id)
        out.append(r)
    return out


def load_rules(path: Path) -> list[Rule]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{path}: not valid TOML: {exc}") from exc
    return parse_rules(doc, str(path))
