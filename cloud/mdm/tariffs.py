"""Tariffs as data: classes, time-of-use periods by season and day type in local time, energy,
demand, reactive and export prices, validity dates; and the lookup that labels every interval
with its time-of-use period.

A tariff document (JSON; docs/mdm.md has a full example):

    {"tariff_id": "RES-TOU", "class": "residential", "currency": "EUR",
     "valid_from": "2026-01-01", "valid_to": null,
     "seasons": {"summer": [4, 5, 6, 7, 8, 9], "winter": [1, 2, 3, 10, 11, 12]},
     "periods": [{"name": "peak", "seasons": ["winter"], "day_types": ["weekday"],
                  "from": "17:00", "to": "21:00"}],
     "default_period": "offpeak",
     "energy_price": {"peak": 0.34, "offpeak": 0.21},
     "demand_charge_per_kw": 0, "reactive_price_per_kvarh": 0, "export_price_per_kwh": null,
     "holidays": ["2026-12-25"]}

Periods are matched in the order given, the first match wins, and every interval no period
matches is in `default_period`. Times are local wall clock, `from` inclusive and `to` exclusive,
and "to" may be before "from" (a period over midnight) or "24:00". An interval is labelled by its
start. Day types: weekday (Monday-Friday), saturday, sunday, holiday (a date in `holidays`,
whatever its weekday), and the shorthands weekend (saturday and sunday) and all.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloud.mdm.calendar import LocalParts, epoch_day

TARIFF_CLASSES = ("residential", "commercial", "industrial", "special")
DAY_TYPES = ("weekday", "saturday", "sunday", "holiday")
_SHORTHAND = {"weekend": ("saturday", "sunday"), "all": DAY_TYPES}
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class TariffError(ValueError):
    """A tariff document that cannot be used; the message names the field and the fix."""


def _minutes(text: str) -> int:
    m = _HHMM.match(text)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{text!r} is not a local time HH:MM between 00:00 and 24:00")
    return int(m.group(1)) * 60 + int(m.group(2))


class TouPeriod(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=40)
    seasons: list[str] = Field(default_factory=lambda: ["all"])
    day_types: list[str] = Field(default_factory=lambda: ["all"])
    from_: str = Field(alias="from", default="00:00")
    to: str = "24:00"

    @field_validator("from_", "to")
    @classmethod
    def _time(cls, v: str) -> str:
        _minutes(v)
        return v

    @field_validator("day_types")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d not in DAY_TYPES and d not in _SHORTHAND]
        if bad:
            raise ValueError(f"unknown day types {bad}: use {', '.join(DAY_TYPES)}, weekend, all")
        return v

    def day_type_set(self) -> set[str]:
        out: set[str] = set()
        for d in self.day_types:
            out.update(_SHORTHAND.get(d, (d,)))
        return out


class Tariff(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tariff_id: str = Field(min_length=1, max_length=64)
    class_: Literal["residential", "commercial", "industrial", "special"] = Field(alias="class")
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    valid_from: date
    valid_to: date | None = None  # inclusive; None: open-ended
    seasons: dict[str, list[int]] = Field(default_factory=lambda: {"all": list(range(1, 13))})
    periods: list[TouPeriod] = Field(default_factory=list)
    default_period: str = "all-day"
    energy_price: dict[str, float]  # per kWh, by period name
    demand_charge_per_kw: float = Field(default=0.0, ge=0)  # per kW of monthly max demand
    reactive_price_per_kvarh: float = Field(default=0.0, ge=0)
    export_price_per_kwh: float | None = Field(default=None, ge=0)  # None: no export tariff
    holidays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Tariff:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        for name, months in self.seasons.items():
            if not months or any(not 1 <= m <= 12 for m in months):
                raise ValueError(f"season {name!r}: give months 1..12")
        names = set(self.seasons) | {"all"}
        for p in self.periods:
            unknown = [s for s in p.seasons if s not in names]
            if unknown:
                raise ValueError(f"period {p.name!r} names unknown seasons {unknown}; "
                                 f"the tariff defines {sorted(self.seasons)}")
        missing = [n for n in self.period_names if n not in self.energy_price]
        if missing:
            raise ValueError(f"energy_price has no price for periods {missing}")
        negative = [n for n, v in self.energy_price.items() if v < 0]
        if negative:
            raise ValueError(f"energy_price is negative for {negative}")
        return self

    @property
    def period_names(self) -> list[str]:
        """Every period name, in order, the default last; each name once."""
        out: list[str] = []
        for n in [p.name for p in self.periods] + [self.default_period]:
            if n not in out:
                out.append(n)
        return out

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def classify(self, parts: LocalParts) -> npt.NDArray[np.int16]:
        """The index into `period_names` of each interval (labelled by its start)."""
        names = self.period_names
        n = parts.day.shape[0]
        out = np.full(n, names.index(self.default_period), dtype=np.int16)
        assigned = np.zeros(n, dtype=bool)
        holiday = np.isin(parts.day, np.array([epoch_day(h) for h in self.holidays],
                                               dtype=np.int64))
        kind = np.where(holiday, 3, np.where(parts.weekday == 6, 2,
                                             np.where(parts.weekday == 5, 1, 0)))
        for p in self.periods:
            months: set[int] = set()
            for s in p.seasons:
                months.update(range(1, 13) if s == "all" and s not in self.seasons
                              else self.seasons[s])
            m = np.isin(parts.month, np.array(sorted(months)))
            m &= np.isin(kind, np.array([DAY_TYPES.index(d) for d in p.day_type_set()]))
            lo, hi = _minutes(p.from_), _minutes(p.to)
            if lo < hi:
                m &= (parts.minute >= lo) & (parts.minute < hi)
            elif lo > hi:  # over midnight
                m &= (parts.minute >= lo) | (parts.minute < hi)
            # lo == hi: the whole day
            m &= ~assigned
            out[m] = names.index(p.name)
            assigned |= m
        return out

    def prices(self) -> npt.NDArray[np.float64]:
        return np.array([self.energy_price[n] for n in self.period_names], dtype=np.float64)


def parse_tariff(doc: Any, *, where: str = "tariff") -> Tariff:
    """A Tariff from a decoded JSON object, or a TariffError naming every bad field."""
    try:
        return Tariff.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(document)'}: {e['msg']}"
            for e in exc.errors())
        raise TariffError(f"{where}: {problems}") from None


def parse_tariffs(doc: Any, *, where: str = "tariffs") -> list[Tariff]:
    """A list of tariffs (a JSON array, or an object with a "tariffs" array); ids unique per
    validity start."""
    items = doc.get("tariffs") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise TariffError(f"{where}: give a JSON array of tariffs or {{\"tariffs\": [...]}}")
    out = [parse_tariff(t, where=f"{where}[{i}]") for i, t in enumerate(items)]
    seen: set[tuple[str, date]] = set()
    for t in out:
        key = (t.tariff_id, t.valid_from)
        if key in seen:
            raise TariffError(f"{where}: tariff {t.tariff_id!r} from {t.valid_from} is given "
                              "twice; give each version once")
        seen.add(key)
    return out
