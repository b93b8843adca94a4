"""Hostile Modbus TCP replies over a real socket: the IO shell returns exactly the words that
answer the request, or raises a typed error; it never hands on a reply to another request.

The server is a raw asyncio socket (not pymodbus) so that it can send what no correct server
sends: another function code, fewer or more words than asked, a byte count that lies. The
property test draws the reply; it runs in `make test` under the derandomised `ci` profile.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.config import MeterConfig
from edge.modbus_io import CommsLost, Link, MeterRefused
from edge.poller import Poller
from protocols.errors import RemoteProtocolError
from protocols.maps import MAP_NAMES
from protocols.planner import Read
from protocols.reading import Quality
from wattrail.cli import app

Replier = Callable[[int, int, bytes], bytes]


def frame(tid: int, unit: int, fc: int, words: list[int], *, byte_count: int | None = None,
          exception_code: int | None = None) -> bytes:
    """An MBAP frame whose length field is always right (so pymodbus parses it at once)."""
    if exception_code is not None:
        body = bytes([fc | 0x80, exception_code])
    else:
        regs = b"".join(struct.pack(">H", w) for w in words)
        body = bytes([fc, len(regs) if byte_count is None else byte_count]) + regs
    return struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body


async def _serve(replier: Replier) -> tuple[asyncio.Server, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, ln, unit = struct.unpack(">HHHB", await r.readexactly(7))
                w.write(replier(tid, unit, await r.readexactly(ln - 1)))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _with_server(replier: Replier, body: Callable[[int], Awaitable[object]]) -> object:
    server, port = await _serve(replier)
    try:
        return await body(port)
    finally:
        server.close()
        await server.wait_closed()


def _read_once(replier: Replier, read: Read, timeout: float) -> list[list[int]]:
    async def body(port: int) -> list[list[int]]:
        link = Link("tcp", f"127.0.0.1:{port}", timeout=timeout, retries=0)
        try:
            return await link.read("MTR-X", 1, (read,))
        finally:
            link.close()

    return asyncio.run(_with_server(replier, body))  # type: ignore[arg-type]


ASKED = Read(4, 10, 8)


# function codes whose replies have the register-read layout (byte count, data); replies of
# other layouts are a timeout at pymodbus, i.e. CommsLost, covered by the byte-count test
@settings(max_examples=60, deadline=None)
@given(fc=st.sampled_from([1, 2, 3, 4, 23]),
       n=st.integers(0, 20),
       exception_code=st.none() | st.sampled_from([1, 2, 3, 4, 6, 0x0A, 0x0B]),
       seed=st.integers(0, 0xFFFF))
def test_a_reply_is_returned_only_if_it_answers_the_request(
        fc: int, n: int, exception_code: int | None, seed: int) -> None:
    words = [(seed + 7919 * i) & 0xFFFF for i in range(n)]

    def reply(tid: int, unit: int, pdu: bytes) -> bytes:
        return frame(tid, unit, fc, words, exception_code=exception_code)

    answers = exception_code is None and fc == ASKED.function and n == ASKED.count
    # a long timeout: every frame here is complete, so none of it is spent waiting unless
    # pymodbus cannot parse the frame at all (then CommsLost is the right verdict anyway)
    try:
        got = _read_once(reply, ASKED, timeout=10.0)
    except (CommsLost, MeterRefused, RemoteProtocolError):
        assert not answers, "a correct reply was refused"
        return
    assert answers, f"a reply with function {fc} and {n} words was returned as data"
    assert got == [words]


@pytest.mark.parametrize("byte_count", [0, 3, 15, 17, 200])
def test_a_byte_count_that_lies_is_never_data(byte_count: int) -> None:
    words = list(range(ASKED.count))

    def reply(tid: int, unit: int, pdu: bytes) -> bytes:
        return frame(tid, unit, 4, words, byte_count=byte_count)

    with pytest.raises((CommsLost, RemoteProtocolError)):
        _read_once(reply, ASKED, timeout=0.5)


def test_the_poller_records_a_wrong_function_code_as_decode_error() -> None:
    def reply(tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _start, count = struct.unpack(">BHH", pdu[:5])
        # the right number of plausible words, but a holding-register answer to an input read
        return frame(tid, unit, 3 if fc == 4 else 4, [0] * count)

    async def body(port: int) -> object:
        meter = MeterConfig(id="MTR-H1", map=MAP_NAMES[0], port=port)
        poller = Poller([meter], timeout=10.0, retries=0, clock_ms=lambda: 1_700_000_000_000)
        try:
            return await poller.poll_meter(meter)
        finally:
            for link in poller.links.values():
                link.close()

    outcome = asyncio.run(_with_server(reply, body))
    assert outcome.reading.quality is Quality.DECODE_ERROR  # type: ignore[attr-defined]
    assert "function code" in outcome.error  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", [37, 42])
def test_meter_probe_refuses_a_reply_with_other_than_the_asked_word_count(n: int) -> None:
    def reply(tid: int, unit: int, pdu: bytes) -> bytes:
        return frame(tid, unit, pdu[0], [0x4366] * n)

    async def body(port: int) -> object:
        # typer's runner is synchronous: run it in a thread while the loop serves
        return await asyncio.to_thread(
            CliRunner().invoke, app,
            ["meter", "probe", "--host", "127.0.0.1", "--port", str(port), "--count", "40",
             "--timeout", "10"])

    result = asyncio.run(_with_server(reply, body))
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    out = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "does not answer the request" in out
    assert f"{n} words" in out or f"got {n}" in out


def test_meter_probe_without_a_server_says_so_without_a_traceback() -> None:
    async def body(port: int) -> int:
        return port

    # a port that was just closed: nothing listens there
    port = asyncio.run(_with_server(lambda t, u, p: b"", body))
    result = CliRunner().invoke(app, ["meter", "probe", "--host", "127.0.0.1", "--port",
                                      str(port), "--timeout", "0.5"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "cannot connect" in result.output or "no usable answer" in result.output
