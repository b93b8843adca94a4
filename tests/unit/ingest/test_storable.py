"""Values the store cannot hold never reach the writer: a validly signed envelope with a
timestamp outside the plausible window, a status beyond int4, a meter id PostgreSQL cannot
index, is quarantined by `classify` with a reason that names the reading and the value.

The property at the end drives random payload values (ints for ts_ms and status far beyond
the format's range, floats with inf/NaN/huge values, odd meter ids) through classify and the
writer's pure row building: either every row it would COPY fits the readings table, or the
message is quarantined with a reason and a quarantine row the table can hold. Never an
exception: one used to kill the ingest worker (issue [2/8], item 1).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import cbor2
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from cloud.ingest.classify import Candidate, Incoming, Quarantine, QuarantineReason, classify
from cloud.ingest.limits import EARLIEST_MS, MAX_AHEAD_MS, Limits
from cloud.ingest.writer import quarantine_row, stage_rows
from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload
from protocols.reading import MEASURED_FIELDS, Reading
from security.keyring import Keyring
from security.keys import key_id, sign_envelope
from tests.unit.security.envelopes import DAY, T0, cert_for, key_from_byte

AGENT = "tx-a"
KEY = key_from_byte(1)
RING = Keyring([cert_for(KEY, AGENT)])
NOW = T0 + 5_000  # the ingestor's clock at receipt, injected through Incoming.received_ms
SENT = T0 + 1_000


def signed(readings: list[Reading], *, seq: int = 1, sent_at: int = SENT) -> bytes:
    prev = GENESIS_PREV_HASH if seq == 1 else b"\x01" * 32
    p = Payload(AGENT, key_id(KEY), seq, prev, sent_at, ClockStatus.SYNCED, readings)
    return sign_envelope(KEY, key_id(KEY), encode_payload(p))


def incoming(data: bytes, now: int = NOW) -> Incoming:
    return Incoming(f"wattrail/v1/{AGENT}/readings", data, mid=1, received_ms=now)


def ok(ts: int, meter: str = "m-1", **kw: Any) -> Reading:
    return Reading(meter, ts, import_wh=1.0, **kw)


YEAR_9999 = int(dt.datetime(9999, 12, 31, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize(("ts", "why"), [
    (2**62, "overflowed timestamptz in to_timestamp()"),
    (2**63, "overflowed the int8 COPY column in Python"),
    (2**64 - 1, "the largest uint the format carries"),
    (YEAR_9999, "a calendar date, but not a plausible one"),
    (0, "1970: a meter clock that never got set"),
    (EARLIEST_MS - 1, "a millisecond before the window"),
    (NOW + MAX_AHEAD_MS + 1, "a millisecond past now + 1 day"),
])
def test_a_signed_reading_outside_the_window_quarantines_the_envelope(ts: int, why: str) -> None:
    out = classify(incoming(signed([ok(T0), ok(T0 + 1, "m-2"), ok(ts, "m-3")])), RING)
    assert isinstance(out, Quarantine), why
    assert out.reason is QuarantineReason.IMPLAUSIBLE_TIME
    assert "reading 2" in out.detail and str(ts) in out.detail and "'m-3'" in out.detail
    assert (out.agent_id, out.seq) == (AGENT, 1)


@pytest.mark.parametrize("ts", [EARLIEST_MS, T0, NOW + MAX_AHEAD_MS])
def test_the_window_edges_are_inside(ts: int) -> None:
    assert isinstance(classify(incoming(signed([ok(ts)])), RING), Candidate)


def test_now_is_the_receipt_time_so_the_window_moves_with_it() -> None:
    data = signed([ok(NOW + 2 * DAY)])
    assert classify(incoming(data), RING).reason is QuarantineReason.IMPLAUSIBLE_TIME  # type: ignore[union-attr]
    # the same bytes re-sent later (the agent re-sends what is not committed) are storable
    assert isinstance(classify(incoming(data, now=NOW + DAY + 1), RING), Candidate)


def test_the_window_is_configurable() -> None:
    data = signed([ok(T0 - 400 * DAY), ok(NOW + 3 * DAY)])
    assert isinstance(classify(incoming(data), RING), Quarantine)
    wide = Limits(earliest_ms=T0 - 500 * DAY, max_ahead_ms=4 * DAY)
    assert isinstance(classify(incoming(data), RING, limits=wide), Candidate)
    with pytest.raises(ValueError, match="max ahead"):
        Limits(max_ahead_ms=-1)
    with pytest.raises(ValueError, match="earliest"):
        Limits(earliest_ms=2**62)


def test_sent_at_outside_the_window_is_quarantined() -> None:
    # inside the key's validity (T0 - 1 day .. T0 + 30 days), but 2 days after the receipt
    out = classify(incoming(signed([ok(T0)], sent_at=NOW + 2 * DAY)), RING)
    assert isinstance(out, Quarantine) and out.reason is QuarantineReason.IMPLAUSIBLE_TIME
    assert "sent_at_ms" in out.detail


@pytest.mark.parametrize(("reading", "seq", "needle"), [
    (ok(T0, status=2**31), 1, "status 2147483648"),
    (ok(T0, status=2**64 - 1), 1, "status"),
    (ok(T0, meter="m\x00x"), 1, "U+0000"),
    (ok(T0, meter="m" * 201), 1, "201 characters"),
    (ok(T0), 2**63, "bigint"),
])
def test_values_the_columns_cannot_hold_are_unstorable(reading: Reading, seq: int,
                                                       needle: str) -> None:
    out = classify(incoming(signed([reading], seq=seq)), RING)
    assert isinstance(out, Quarantine) and out.reason is QuarantineReason.UNSTORABLE, out
    assert needle in out.detail
    row = quarantine_row(out)
    assert row[3] is None or row[3] < 2**63  # the quarantine table's seq is a bigint too


@pytest.mark.parametrize("reading", [ok(T0, status=2**31 - 1), ok(T0, meter="é" * 200),
                                     Reading("m", T0, v_l1=1.7976931348623157e308, pf=-0.0,
                                             i_n=5e-324)])
def test_the_largest_storable_values_are_candidates(reading: Reading) -> None:
    assert isinstance(classify(incoming(signed([reading])), RING), Candidate)


def test_quarantine_rows_hold_any_claim() -> None:
    out = Quarantine(incoming(b"junk"), QuarantineReason.MALFORMED, "bad \x00 detail",
                     b"\x00" * 32, agent_id="evil\x00" + "a" * 1000, seq=2**64 - 1)
    _sha, raw, agent, seq, reason, detail = quarantine_row(out)
    assert (raw, seq, reason) == (b"junk", None, "malformed")
    assert agent is not None and "\x00" not in agent and len(agent) <= 256
    assert "\x00" not in detail and "\\x00" in detail


# -- the property --------------------------------------------------------------------------------
PG_TS_MIN_MS = -210_866_803_200_000  # 4713-01-01 BC, timestamptz's first day
PG_TS_END_MS = 9_224_318_016_000_000  # 294277-01-01 AD, the day after its last


def assert_fits_readings(row: tuple[Any, ...]) -> None:
    """Each value of one staged row fits its readings column (cloud/store/migrations/0004)."""
    meter, ts, *values = row[:2 + len(MEASURED_FIELDS)]
    status, quality, agent, seq = row[2 + len(MEASURED_FIELDS):]
    assert type(meter) is str and meter and "\x00" not in meter
    assert len(meter.encode()) <= 2000  # a btree entry holds at most ~2.7 kB
    assert type(ts) is int and PG_TS_MIN_MS <= ts < PG_TS_END_MS
    assert EARLIEST_MS <= ts <= NOW + MAX_AHEAD_MS  # and plausible
    for v in values:
        assert v is None or (type(v) is float and math.isfinite(v))
    assert type(status) is int and 0 <= status <= 2**31 - 1  # integer, same meaning
    assert isinstance(quality, int) and 0 <= quality <= 4  # smallint CHECK (BETWEEN 0 AND 4)
    assert (agent, type(seq)) == (AGENT, int) and 1 <= seq <= 2**63 - 1


def assert_fits_quarantine(q: Quarantine) -> None:
    sha, raw, agent, seq, reason, detail = quarantine_row(q)
    assert len(sha) == 32 and type(raw) is bytes
    assert agent is None or "\x00" not in agent
    assert seq is None or 0 <= seq <= 2**63 - 1
    assert reason in {r.value for r in QuarantineReason}
    assert detail and "\x00" not in detail


EXTREME_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
                -(2**63), -(2**64), EARLIEST_MS - 1, EARLIEST_MS, T0, NOW + MAX_AHEAD_MS,
                NOW + MAX_AHEAD_MS + 1, YEAR_9999, -62_135_596_800_000]  # the last: year 1
# Each example poisons at most one kind of value, in some of its readings, so that most
# envelopes get past the decoder and the limits are what decides (else nearly every example
# would be malformed and the property would say little about the storable ones).
any_int = st.one_of(st.sampled_from(EXTREME_INTS), st.integers(-(2**65), 2**65))
plausible_ts = st.one_of(st.integers(EARLIEST_MS, NOW + MAX_AHEAD_MS),
                         st.sampled_from([EARLIEST_MS, T0, NOW + MAX_AHEAD_MS]))
storable_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                           st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308,
                                            5e-324, -0.0]))
nasty_float = st.one_of(st.floats(), st.sampled_from([math.inf, -math.inf, math.nan]),
                        st.integers(-3, 3))  # an int in a float column is malformed too
# CBOR text is UTF-8: no surrogates (Cs) on the wire, whatever a sender tries
storable_meter = st.one_of(st.sampled_from(["m-1", "m-2", "é" * 200, "M" * 200]),
                           st.text(st.characters(blacklist_categories=["Cs"],
                                                 blacklist_characters="\x00"),
                                   min_size=1, max_size=8))
nasty_meter = st.one_of(st.sampled_from(["m\x00", "", "x" * 201]),
                        st.text(st.characters(blacklist_categories=["Cs"]), max_size=8))
POISONS = ("none", "ts", "status", "quality", "meter", "field", "seq")


@st.composite
def readings_docs(draw: st.DrawFn) -> tuple[dict[int, Any], str]:
    n = draw(st.integers(0, 4))
    poison = draw(st.sampled_from(POISONS))

    def col(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], kind: str) -> list[Any]:
        return [draw(bad if poison == kind and draw(st.booleans()) else good)
                for _ in range(n)]

    bad_field = draw(st.sampled_from(MEASURED_FIELDS))
    fields = {f: col(storable_float, nasty_float, "field" if f == bad_field else "-")
              for f in MEASURED_FIELDS}
    seq = draw(st.sampled_from([2**63 - 1, 2**63, 2**64 - 1])) if poison == "seq" else 1
    doc = {0: 1, 1: AGENT, 2: key_id(KEY), 3: seq,
           4: GENESIS_PREV_HASH if seq == 1 else b"\x01" * 32, 5: SENT, 6: 0,
           7: col(storable_meter, nasty_meter, "meter"), 8: col(plausible_ts, any_int, "ts"),
           9: col(st.integers(0, 2**31 - 1), any_int, "status"),
           10: col(st.integers(0, 4), st.integers(-2, 7), "quality"), 11: fields}
    return doc, poison


@settings(max_examples=400)
@given(readings_docs())
@example(({0: 1, 1: AGENT, 2: key_id(KEY), 3: 1, 4: GENESIS_PREV_HASH, 5: SENT, 6: 0,
           7: ["m"], 8: [2**62], 9: [0], 10: [0],
           11: {f: [None] for f in MEASURED_FIELDS}}, "ts"))
def test_random_payload_values_are_storable_or_quarantined(doc_poison: tuple[dict[int, Any], str]
                                                           ) -> None:
    doc, poison = doc_poison
    # deterministic CBOR straight from the values: encode_payload would refuse the junk
    data = sign_envelope(KEY, key_id(KEY), cbor2.dumps(doc, canonical=True))
    out = classify(incoming(data), RING)
    event(f"{poison}: {type(out).__name__} {getattr(out, 'reason', '')}")
    if isinstance(out, Candidate):
        rows = stage_rows(out)
        assert len(rows) == len(doc[7])
        for row in rows:
            assert_fits_readings(row)
    else:
        assert isinstance(out.reason, QuarantineReason) and out.detail
        assert_fits_quarantine(out)
