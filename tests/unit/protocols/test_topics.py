from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import ProtocolError
from protocols.topics import (
    InvalidAgentId,
    MalformedMessage,
    decode_ack,
    encode_ack,
    parse_topic,
    shared_subscription,
    topic,
)


def test_topics() -> None:
    assert topic("tx-0007", "readings") == "wattrail/v1/tx-0007/readings"
    assert parse_topic("wattrail/v1/tx-0007/ack") == ("tx-0007", "ack")
    assert shared_subscription() == "$share/ingest/wattrail/v1/+/readings"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "wattrail-ingestor", "-x", "a" * 65, "é",
                                 "Wattrail-X", "$SYS", "a b"],
                         ids=["empty", "slash", "plus", "hash", "reserved", "dash-first", "long",
                              "non-ascii", "reserved-case", "dollar", "blank"])
def test_invalid_agent_ids(bad: str) -> None:
    with pytest.raises(InvalidAgentId):
        topic(bad, "readings")


@pytest.mark.parametrize("name", ["wattrail/v1/a/other", "wattrail/v2/a/ack", "wattrail/v1/a",
                                  "wattrail/v1/+/ack", "x/wattrail/v1/a/ack"])
def test_parse_topic_rejects(name: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_topic(name)


@given(st.integers(0, 2**63), st.binary(min_size=32, max_size=32))
def test_ack_roundtrip(seq: int, digest: bytes) -> None:
    assert decode_ack(encode_ack(seq, digest)) == (seq, digest)


@given(st.integers(0, 2**40), st.binary(min_size=32, max_size=32))
def test_ack_every_prefix_is_rejected(seq: int, digest: bytes) -> None:
    data = encode_ack(seq, digest)
    for i in range(len(data)):
        with pytest.raises(MalformedMessage):
            decode_ack(data[:i])


H = bytes(range(32))


def _ack(*items: bytes) -> bytes:
    """A CBOR map of the given encoded key-value pairs."""
    return bytes([0xA0 + len(items) // 2]) + b"".join(items)


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xa1\x01\x05", id="old-form-without-hash"),
    pytest.param(_ack(b"\x01", b"\x05", b"\x02", b"\x58\x1f" + H[:31]), id="short-hash"),
    pytest.param(_ack(b"\x01", b"\x05", b"\x02", b"\x78\x20" + b"a" * 32), id="hash-as-text"),
    pytest.param(_ack(b"\x02", b"\x58\x20" + H, b"\x01", b"\x05"), id="keys-out-of-order"),
    pytest.param(_ack(b"\x01", b"\x20", b"\x02", b"\x58\x20" + H), id="negative-with-hash"),
    pytest.param(b"\xa1\x01\x20", id="negative"),
    pytest.param(b"\xa1\x02\x01", id="wrong-key"),
    pytest.param(b"\xa1\x01\x18\x01", id="non-shortest-int"),
    pytest.param(b"\xa1\x01\xf5", id="bool"),
    pytest.param(b"\xa1\x01\x01\x00", id="trailing"),
    pytest.param(b"\x01", id="not-a-map"),
    pytest.param(b"\xa2\x01\x01\x02\x02", id="hash-not-bytes"),
    pytest.param(encode_ack(1, H)[:1].replace(b"\xa2", b"\xa3") + encode_ack(1, H)[1:]
                 + b"\x03\x00", id="extra-key"),
])
def test_ack_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_ack(payload)


def test_ack_needs_a_32_byte_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encode_ack(1, b"short")


@given(st.binary(max_size=48))
def test_ack_fuzz(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_ack(data)
