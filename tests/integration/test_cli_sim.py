"""`wattrail sim` serves a grid a plain pymodbus client can read, and writes its ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from firmware_sim.grid_file import load_grid
from protocols.decode import decode_reading
from protocols.maps import get_map
from protocols.planner import plan_reads

pytestmark = pytest.mark.integration


def test_wattrail_sim_serves_and_writes_truth(tmp_path: Path) -> None:
    ep, truth, grid = tmp_path / "ep.json", tmp_path / "truth.json", tmp_path / "grid.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattrail.cli", "sim", "--meters", "200", "--duration", "8",
         "--base-port", "0", "--endpoints", str(ep), "--truth", str(truth),
         "--grid", str(grid), "--theft-rate", "0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # generous: a loaded 2-core machine starts slowly
        while not ep.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert ep.exists(), "the simulator never wrote its endpoints"
        gw = json.loads(ep.read_text())["endpoints"][0]
        models = load_grid(grid).meter_models()
        unit = gw["units"][1]
        client = ModbusTcpClient(gw["host"], port=gw["port"], timeout=3)
        assert client.connect()
        try:
            name = models[unit["meter_id"]]
            mmap = get_map(name)
            plan = plan_reads(mmap)
            words = []
            for r in plan:
                read = client.read_input_registers if r.function == 4 else \
                    client.read_holding_registers
                rr = read(r.start, count=r.count, device_id=unit["unit_id"])
                assert not rr.isError(), rr
                words.append(rr.registers)
        finally:
            client.close()
        reading = decode_reading(mmap, plan, words, meter_id=unit["meter_id"], ts_ms=0).reading
        assert reading.v_l1 is not None and 180 < reading.v_l1 < 260
        assert reading.import_wh is not None and reading.import_wh >= 0
    finally:
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    data = json.loads(truth.read_text())
    assert data["format"].startswith("wattrail"), data["format"]
    assert data["transformers"], "the ground truth names no transformer"
