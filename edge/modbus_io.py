"""The Modbus IO shell: one pymodbus client per link, library errors translated at the boundary.

A *link* is what one connection reaches: an RS-485 bus behind a serial port, or a TCP (or
TLS) gateway with many unit ids behind it. Requests on a link go one at a time, as on a real
half-duplex bus; different links are polled concurrently.

Errors, split by what the poller does with them (after httpcore's `map_exceptions`):
- `CommsLost`: timeout, refused or dropped connection, garbled frame (bad CRC frames are
  dropped by pymodbus and surface as a timeout). The reading is recorded as COMMS_LOST.
- `MeterRefused`: the meter answered with a Modbus exception code (e.g. 2, illegal data
  address: the map does not fit this meter). The reading is recorded as DECODE_ERROR.
  Gateway exceptions 0x0A/0x0B mean the meter never answered, and 0x04/0x05/0x06 (device
  failure, acknowledge, busy) mean it gave no data *this time*: those are `CommsLost`, so
  they count towards the meter's circuit breaker.
- `protocols.errors.RemoteProtocolError`: an answer that does not answer the request (another
  function code, too few or too many words). The reading is recorded as DECODE_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from protocols.decode import check_reply
from protocols.planner import Read

log = logging.getLogger("wattrail.edge.modbus")


class ModbusLinkError(Exception):
    def __init__(self, message: str, *, meter_id: str, link: str) -> None:
        super().__init__(f"{message} [meter {meter_id} via {link}]")
        self.meter_id = meter_id
        self.link = link


class LinkConfigError(ValueError):
    """We were told to open a link we cannot open as configured (our fault, not the meter's)."""

    def __init__(self, message: str, *, link: str) -> None:
        super().__init__(f"{link}: {message}")
        self.link = link


class CommsLost(ModbusLinkError):  # noqa: N818 - the quality flag's name, on purpose
    """No usable answer: the meter, the bus or the gateway is unreachable right now."""

    exception_code: int | None = None  # set when a Modbus exception response said so


class MeterRefused(ModbusLinkError):  # noqa: N818
    def __init__(self, message: str, *, meter_id: str, link: str, exception_code: int) -> None:
        super().__init__(message, meter_id=meter_id, link=link)
        self.exception_code = exception_code


@contextmanager
def map_exceptions(meter_id: str, link: str) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, ModbusIOException, ConnectionException, OSError) as exc:
        raise CommsLost(f"{type(exc).__name__}: {exc}", meter_id=meter_id, link=link) from exc
    except ModbusException as exc:
        raise CommsLost(f"modbus: {exc}", meter_id=meter_id, link=link) from exc


# 0x0A gateway path unavailable, 0x0B gateway target device failed to respond: the meter
# said nothing, so the reading is COMMS_LOST, not a decode problem.
GATEWAY_EXCEPTIONS = frozenset({0x0A, 0x0B})
# 0x04 server device failure, 0x05 acknowledge (still working), 0x06 server device busy:
# transient, the meter has no data for us now. A retry later may succeed; the map is fine.
TRANSIENT_EXCEPTIONS = frozenset({0x04, 0x05, 0x06})
NO_ANSWER_EXCEPTIONS = GATEWAY_EXCEPTIONS | TRANSIENT_EXCEPTIONS

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient | AsyncModbusTlsClient


class Link:
    def __init__(self, kind: str, target: str, *, timeout: float, retries: int,
                 baudrate: int = 9600, parity: str = "N",
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.name = f"{kind}://{target}"
        self._lock = asyncio.Lock()
        self.client: ModbusClient
        if kind == "rtu":
            self.client = AsyncModbusSerialClient(target, baudrate=baudrate, parity=parity,
                                                  timeout=timeout, retries=retries)
        else:
            host, port = target.rsplit(":", 1)
            if kind == "tls":
                if tls_context is None:
                    # pymodbus would pass ssl=None on to asyncio and talk plain TCP
                    raise LinkConfigError(
                        "transport 'tls' needs an ssl.SSLContext (the gateway's CA, our "
                        "certificate and key) and none was given; refusing to fall back to "
                        "plain TCP. Use transport 'tcp' (e.g. through a TLS tunnel)",
                        link=self.name)
                self.client = AsyncModbusTlsClient(host, port=int(port), timeout=timeout,
                                                   retries=retries, sslctx=tls_context)
            else:
                self.client = AsyncModbusTcpClient(host, port=int(port), timeout=timeout,
                                                   retries=retries)

    async def _ensure_connected(self, meter_id: str) -> None:
        if self.client.connected:
            return
        with map_exceptions(meter_id, self.name):
            ok = await self.client.connect()
        if not ok:
            raise CommsLost("cannot connect", meter_id=meter_id, link=self.name)

    async def read(self, meter_id: str, unit_id: int, reads: tuple[Read, ...]) -> list[list[int]]:
        """Run a meter's planned reads; the words of each, in plan order."""
        async with self._lock:
            await self._ensure_connected(meter_id)
            out: list[list[int]] = []
            for r in reads:
                with map_exceptions(meter_id, self.name):
                    if r.function == 4:
                        rr = await self.client.read_input_registers(
                            r.start, count=r.count, device_id=unit_id)
                    elif r.function == 3:
                        rr = await self.client.read_holding_registers(
                            r.start, count=r.count, device_id=unit_id)
                    else:
                        raise ValueError(f"function {r.function} is not a register read")
                if rr.isError():
                    code = int(getattr(rr, "exception_code", 0))
                    if code in NO_ANSWER_EXCEPTIONS:  # no data from the meter this time
                        lost = CommsLost(f"exception 0x{code:02X} for {r}",
                                         meter_id=meter_id, link=self.name)
                        lost.exception_code = code
                        raise lost
                    raise MeterRefused(f"exception code {code} for {r}", meter_id=meter_id,
                                       link=self.name, exception_code=code)
                words = list(rr.registers)
                # a reply to another request (wrong function code or word count) raises a
                # RemoteProtocolError here: the poller records DECODE_ERROR, never the words
                check_reply(r, int(rr.function_code), words, meter_id=meter_id)
                out.append(words)
            return out

    def close(self) -> None:
        self.client.close()
