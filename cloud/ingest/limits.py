"""What the store can hold and what is plausible, judged on a signed payload before the writer
sees it. Pure: no clock is read here, "now" is the instant the ingestor received the message.

Why here and not in the database: a value the database refuses fails the whole transaction,
and one such envelope used to kill the ingest worker (a reading at ts_ms = 2^62 overflowed
`timestamptz`; 2^63 overflowed the `int8` COPY column in Python). The payload decoder already
guarantees the types (uints, finite floats, quality 0..4); these rules close the gap between
"a valid CBOR uint" and "a value the readings table holds with the same meaning":

    value            stored as                           refused when
    reading ts_ms    timestamptz (readings.ts)           outside [earliest, received + max ahead]
    sent_at_ms       timestamptz (envelopes.sent_at)     the same window
    seq              bigint                              >= 2^63 (the format allows 2^64 - 1)
    status           integer                             >= 2^31 (int4 would wrap it negative)
    meter_id         text, in the (meter_id, ts) key     over 200 characters, or with U+0000
    measured values  double precision                    never: the decoder refuses NaN and
                                                         +-inf, and every finite float fits

Plausibility of the measured values themselves (a negative voltage, a register that runs
backwards) is not judged here: the signed reading is evidence and is stored as signed;
validation belongs to the layer that reads it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

from protocols.envelope import Payload

EARLIEST_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z: no smart meter of ours is older
MAX_AHEAD_MS: Final = 86_400_000  # a day past the receipt: clock skew, never a year 9999
# PostgreSQL's timestamptz ends in 294276 AD; to_timestamp() of the ms as a double is exact to
# the millisecond far beyond this bound, which any configured window must stay inside.
_TS_CEILING_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
INT4_MAX: Final = 2**31 - 1
INT8_MAX: Final = 2**63 - 1
MAX_METER_ID_LEN: Final = 200  # the API's limit for a meter id (cloud/api/routes/*.py)


@dataclass(frozen=True, slots=True)
class Limits:
    """The plausible window for timestamps: [earliest_ms, received_ms + max_ahead_ms]."""

    earliest_ms: int = EARLIEST_MS
    max_ahead_ms: int = MAX_AHEAD_MS

    def __post_init__(self) -> None:
        if not 0 <= self.earliest_ms < _TS_CEILING_MS:
            raise ValueError(f"earliest timestamp {self.earliest_ms} ms must lie between "
                             f"1970-01-01 and 9999-12-31")
        if not 0 <= self.max_ahead_ms <= 366 * 86_400_000:
            raise ValueError(f"max ahead {self.max_ahead_ms} ms must be 0 .. 366 days")

    def latest_ms(self, now_ms: int) -> int:
        return min(now_ms + self.max_ahead_ms, _TS_CEILING_MS)


@dataclass(frozen=True, slots=True)
class OutOfLimits:
    """Why a payload cannot be stored as signed. `index` is the reading's position in the
    envelope (None: the envelope's own field)."""

    what: Literal["time", "value"]
    detail: str
    index: int | None = None


def iso_ms(ms: int) -> str:
    """An instant for a human, or the raw number when no calendar holds it."""
    try:
        return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
                ).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return "beyond year 9999"


def check_payload(p: Payload, now_ms: int, limits: Limits) -> OutOfLimits | None:
    """The first value of `p` the store cannot hold or the window refuses, else None."""
    lo, hi = limits.earliest_ms, limits.latest_ms(now_ms)
    window = f"the plausible window {iso_ms(lo)} .. {iso_ms(hi)}"
    if p.seq > INT8_MAX:
        return OutOfLimits("value", f"seq {p.seq} does not fit a bigint (max 2^63 - 1)")
    if not lo <= p.sent_at_ms <= hi:
        return OutOfLimits("time", f"sent_at_ms {p.sent_at_ms} ({iso_ms(p.sent_at_ms)}) is "
                                   f"outside {window}")
    rs = p.readings
    if not rs:
        return None
    # whole-column checks first (C-speed builtins); the loop below only runs to say which
    stamps = [r.ts_ms for r in rs]
    ids = {r.meter_id for r in rs}
    if (lo <= min(stamps) and max(stamps) <= hi and max(r.status for r in rs) <= INT4_MAX
            and all(len(m) <= MAX_METER_ID_LEN and "\x00" not in m for m in ids)):
        return None
    for i, r in enumerate(rs):
        where = f"reading {i} (meter {r.meter_id[:40]!r})"
        if not lo <= r.ts_ms <= hi:
            return OutOfLimits("time", f"{where}: ts_ms {r.ts_ms} ({iso_ms(r.ts_ms)}) is "
                                       f"outside {window}", i)
        if r.status > INT4_MAX:
            return OutOfLimits("value", f"{where}: status {r.status} does not fit an integer "
                                        "column (max 2^31 - 1)", i)
        if len(r.meter_id) > MAX_METER_ID_LEN:
            return OutOfLimits("value", f"{where}: meter id of {len(r.meter_id)} characters, "
                                        f"more than {MAX_METER_ID_LEN}", i)
        if "\x00" in r.meter_id:
            return OutOfLimits("value", f"{where}: meter id holds U+0000, which PostgreSQL "
                                        "text cannot store", i)
    raise AssertionError("a column check failed but no reading did")  # pragma: no cover
