"""`wattrail meter ...`: look at a meter before putting it in an agent's configuration."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from protocols.decode import check_reply
from protocols.errors import ProtocolError
from protocols.planner import Read
from protocols.probe import probe_word_order

app = typer.Typer(help="Inspect meters: which register map and word order fit a meter.",
                  no_args_is_help=True)


async def _read_words(host: str, port: int, unit: int, function: int, start: int,
                      count: int, timeout: float) -> list[int]:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    client = AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=1)
    try:
        if not await client.connect():
            raise typer.BadParameter(f"cannot connect to {host}:{port}")
        words: list[int] = []
        # one read may return at most 125 registers (Modbus spec); stay well under it
        for off in range(0, count, 100):
            n = min(100, count - off)
            read = client.read_input_registers if function == 4 else client.read_holding_registers
            rr = await read(start + off, count=n, device_id=unit)
            if rr.isError():
                raise typer.BadParameter(
                    f"the meter answered exception code {getattr(rr, 'exception_code', '?')} "
                    f"for {n} registers at {start + off}: try --function {7 - function} or a "
                    "smaller --count")
            got = list(rr.registers)
            try:  # a hostile or confused server must not get 37 or 42 words ranked as 40
                check_reply(Read(function, start + off, n), int(rr.function_code), got)
            except ProtocolError as exc:
                raise typer.BadParameter(
                    f"the reply to {n} registers at {start + off} does not answer the "
                    f"request: {exc}") from exc
            words += got
        return words
    except (ModbusException, OSError, TimeoutError) as exc:
        raise typer.BadParameter(
            f"no usable answer from {host}:{port} unit {unit}: {type(exc).__name__}: {exc}. "
            "Check the address, the unit id and --timeout") from exc
    finally:
        client.close()


@app.command()
def probe(
    host: Annotated[str | None, typer.Option(help="meter or gateway address (Modbus TCP)")] = None,
    port: Annotated[int, typer.Option(help="Modbus TCP port")] = 502,
    unit: Annotated[int, typer.Option(help="unit id (slave address) behind the gateway")] = 1,
    function: Annotated[int, typer.Option(help="4 = input registers, 3 = holding")] = 4,
    start: Annotated[int, typer.Option(help="first register address (0-based)")] = 0,
    count: Annotated[int, typer.Option(help="how many registers to read")] = 0x50,
    words: Annotated[str | None, typer.Option(
        help="instead of reading a meter, rank these words: hex, comma or space separated")] = None,
    top: Annotated[int, typer.Option(help="how many candidates to show")] = 8,
    timeout: Annotated[float, typer.Option(help="seconds per Modbus request")] = 2.0,
) -> None:
    """Rank register layouts and word orders by how physical the meter's values look
    (V 90-300, Hz 45-65, PF -1..1, I >= 0). The best candidate is first."""
    if function not in (3, 4):
        raise typer.BadParameter("--function must be 3 or 4")
    if words is not None:
        try:
            regs = [int(w, 16) for w in words.replace(",", " ").split()]
        except ValueError as exc:
            raise typer.BadParameter(f"--words must be hex 16-bit words: {exc}") from exc
    elif host is None:
        raise typer.BadParameter("give --host (read a meter) or --words (rank given words)")
    else:
        regs = asyncio.run(_read_words(host, port, unit, function, start, count, timeout))
    results = probe_word_order(regs, start=start)
    table = Table(title=f"word-order probe over {len(regs)} registers from {start}")
    for col in ("rank", "candidate", "score", "evidence"):
        table.add_column(col)
    for i, r in enumerate(results[:top], 1):
        table.add_row(str(i), r.candidate.label, f"{r.score:.2f} ({r.passed}/{r.checked})",
                      "; ".join(r.reasons[:4]))
    Console().print(table)
