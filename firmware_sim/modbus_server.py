"""Modbus servers for the simulated meters (pymodbus 3.16), with fault injection on the wire.

pymodbus builds its own datastore from the context it is given; we hand it a one-register
placeholder device and then swap in a `GatewayContext` (datastore.py), the duck-typed object
pymodbus calls (`async_getValues`, `async_setValues`, `device_ids`). That is the one place
we lean on pymodbus internals (`server.context`, `ServerRequestHandler.handle_request`,
`last_pdu`); the integration tests pin it.

The request handler asks the fault plan what happens to each request before answering:
reply, reply late, never reply, answer with a Modbus exception, send a damaged frame (RTU: the
CRC is wrong; a TCP gateway instead answers exception 0x0B, as a real RS-485 gateway does when
the line returned garbage), or drop the TCP connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.datastore import Gateway, GatewayContext, RegisterStore
from firmware_sim.faults import Action

log = logging.getLogger(__name__)


def _placeholder() -> SimDevice:
    return SimDevice(0, simdata=[SimData(0, datatype=DataType.REGISTERS)])


class _FaultyHandler(ServerRequestHandler):
    """Answers like pymodbus does, after asking the fault plan what to do with the request."""

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if not pdu:
            return
        ctx: GatewayContext = self.server.context
        meter = ctx.gateway.meter_for(pdu.dev_id)
        if meter is None:
            # Answer here rather than in pymodbus, which logs every miss at error level.
            if self.server.is_tcp:  # an RS-485 gateway reports the silent unit with 0x0B
                self._send_exception(pdu, ExcCodes.GATEWAY_NO_RESPONSE)
            return  # on a serial line nobody answers for an absent unit
        action, mf = ctx.store.faults.decide(meter, ctx.store.now())
        if action is not Action.REPLY:
            stats = ctx.store.stats.faults
            stats[action.value] = stats.get(action.value, 0) + 1
        if action is Action.TIMEOUT:
            return
        if action is Action.DROP and self.server.is_tcp:
            if self.transport:
                self.transport.close()
            return
        if action is Action.SLOW and mf is not None:
            await asyncio.sleep(mf.slow_s)
        elif action is Action.EXCEPTION and mf is not None:
            self._send_exception(pdu, mf.exception_code)
            return
        elif action is Action.CORRUPT:
            if self.server.is_tcp:
                self._send_exception(pdu, ExcCodes.GATEWAY_NO_RESPONSE)
            else:
                await self._send_corrupt(pdu)
            return
        await super().handle_request()  # type: ignore[no-untyped-call]  # pymodbus: no annotations

    def _send_exception(self, pdu: Any, code: int) -> None:
        response = ExceptionResponse(pdu.function_code, code)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, self.last_addr)  # type: ignore[no-untyped-call]  # as above

    async def _send_corrupt(self, pdu: Any) -> None:
        response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        frame = bytearray(self.framer.buildFrame(response))
        frame[-1] ^= 0x5A  # the CRC no longer matches: the client must discard the frame
        self.low_level_send(bytes(frame), addr=self.last_addr)


class SimTcpServer(ModbusTcpServer):
    """A TCP port: one RS-485-to-TCP gateway (many unit ids) or one meter."""

    is_tcp = True

    def __init__(self, store: RegisterStore, gateway: Gateway, host: str, port: int) -> None:
        super().__init__(_placeholder(), address=(host, port))
        self.context = GatewayContext(store, gateway)  # type: ignore[assignment]
        self.gateway = gateway

    def callback_new_connection(self) -> ServerRequestHandler:
        # pymodbus' ServerRequestHandler.__init__ has no annotations
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu,  # type: ignore[no-untyped-call]
                              self.trace_connect)


class SimRtuServer(ModbusSerialServer):
    """One RS-485 line (a serial port or pty) with the gateway's meters on it."""

    is_tcp = False

    def __init__(self, store: RegisterStore, gateway: Gateway, port: str, baudrate: int = 19200) -> None:
        # A meter that is not on the line stays silent, as on a real bus.
        super().__init__(
            _placeholder(),
            framer=FramerType.RTU,
            port=port,
            baudrate=baudrate,
            ignore_missing_devices=True,
        )
        self.context = GatewayContext(store, gateway)  # type: ignore[assignment]
        self.gateway = gateway

    def callback_new_connection(self) -> ServerRequestHandler:
        # pymodbus' ServerRequestHandler.__init__ has no annotations
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu,  # type: ignore[no-untyped-call]
                              self.trace_connect)


async def start_tcp(store: RegisterStore, gateway: Gateway, host: str, port: int) -> SimTcpServer:
    """Listen (port 0 = any free port; the bound port is in `bound_port(server)`)."""
    server = SimTcpServer(store, gateway, host, port)
    await server.serve_forever(background=True)
    return server


def bound_port(server: SimTcpServer) -> int:
    sockets = getattr(server.transport, "sockets", None)
    if not sockets:
        raise RuntimeError("server is not listening")
    return int(sockets[0].getsockname()[1])


async def start_rtu(store: RegisterStore, gateway: Gateway, port: str) -> SimRtuServer:
    server = SimRtuServer(store, gateway, port)
    await server.serve_forever(background=True)
    return server
