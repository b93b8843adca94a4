"""The demo's moving parts: prepare the grid, identities and ingestors; stream simulated days
through real agents on the lock-step clock; then hand over to `report`. `main` and `run` are the
entry point (`python -m wattrail.demo`, `wattrail demo`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from rich.console import Console

from wattrail.demo import report
from wattrail.demo.setup import (
    CACHE,
    POLL_S,
    REPO,
    DemoOptions,
    fresh_database,
    issue_tls,
    services,
    start_services,
)

if TYPE_CHECKING:
    from edge.agent import Agent
    from firmware_sim.clock import SimClock
    from firmware_sim.simulation import Simulation


class DemoRun:
    def __init__(self, opt: DemoOptions, svc: dict[str, Any], state_dir: Path, dsn: str,
                 console: Console) -> None:
        self.opt, self.svc, self.state_dir, self.dsn, self.console = opt, svc, state_dir, dsn, console
        self.work = opt.workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []  # the processes' log files, closed at shutdown
        self.agents: list[Agent] = []
        self.sim: Simulation | None = None
        self.clock: SimClock | None = None
        self.wall_s = 0.0  # real seconds the streaming took
        self.notes: list[str] = []  # what went wrong while streaming, for the report and tests

    # -- preparation -----------------------------------------------------------------------
    def prepare(self) -> None:
        # the live table is the demo's voice; libraries' chatter goes to the log level only
        logging.basicConfig(level=logging.ERROR)
        for name in ("wattrail", "edge"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # dumps frames on each timeout
        from cloud.ingest.registry import register_from_pki
        from cloud.store.topology import import_topology
        from firmware_sim.grid_service import DEFAULT_START_S, build_simulation
        from firmware_sim.simulation import Simulation
        from security.keys import generate_key, save_private_key
        from security.pki import init_ca, issue_agent

        grid_file = self.work / "grid.json"
        self.sim = build_simulation(meters=self.opt.meters, seed=self.opt.seed,
                                    grid_file=grid_file, theft_rate=self.opt.theft_rate,
                                    start_s=DEFAULT_START_S)
        self.start_s = DEFAULT_START_S
        if self.opt.thefts is not None:
            self.sim = Simulation(self.sim.grid, self.start_s, self._known_thefts(self.sim.grid))
        with psycopg.connect(self.dsn) as conn:
            import_topology(conn, grid_file)
        pki = self.work / "pki"
        # identities valid from just before the simulated start: envelopes are judged by
        # their (simulated) sent-at against the key's validity window
        born = dt.datetime.fromtimestamp(self.start_s, dt.UTC) - dt.timedelta(days=1)
        init_ca(pki, now=born)
        self.gateways = self.sim.grid.gateways()
        for gw in self.gateways:
            issue_agent(pki, gw, now=born)
        save_private_key(generate_key(), pki / "log.key")
        with psycopg.connect(self.dsn) as conn:
            register_from_pki(conn, pki)
        cert, key = issue_tls(self.state_dir, "wattrail-ingestor")
        env = dict(os.environ, WATTRAIL_DSN=self.dsn, WATTRAIL_MQTT_HOST=self.svc["mqtt_host"],
                   WATTRAIL_MQTT_PORT=str(self.svc["mqtt_port"]),
                   WATTRAIL_MQTT_CA=self.svc["ca_cert"], WATTRAIL_INGESTOR_CERT=str(cert),
                   WATTRAIL_INGESTOR_KEY=str(key))
        for i in range(self.opt.ingestors):
            log = open(self.work / f"ingest-{i}.log", "wb")  # noqa: SIM115 - lives with the process
            self.logs.append(log)
            args = [sys.executable, "-m", "wattrail.cli", "ingest", "--share-group", "demo",
                    "--sth-every", "5", "--max-ahead", str(self._max_ahead_s())]
            if i == 0:  # one sequencer is enough; the advisory lock would serialise more
                args += ["--log-key", str(pki / "log.key")]
            self.procs.append(subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=log))

    def _max_ahead_s(self) -> int:
        """The ingestor quarantines readings more than a day past its clock (implausible_time);
        the simulated days may run ahead of the wall clock, so the demo widens the window to
        its own last instant (up to the limit the ingestor accepts)."""
        end_s = self.start_s + self.opt.days * 86_400
        return int(min(366 * 86_400, max(86_400, end_s - time.time() + 86_400)))

    def _known_thefts(self, grid: Any) -> Any:
        """`opt.thefts` as a theft plan, each scenario active from `opt.thefts_from_h` on."""
        from firmware_sim.theft import TheftEvent, TheftPlan

        first = int(self.start_s // 60) + int(self.opt.thefts_from_h * 60)
        last = int(self.start_s // 60) + int(self.opt.days * 1440) + 1440
        return TheftPlan(grid.seed, [
            TheftEvent(c, grid.customers[c].meter_id, kind, first, last, dict(params))
            for c, kind, params in sorted(self.opt.thefts or (), key=lambda t: t[0])])

    def summary(self) -> str:
        assert self.sim is not None
        g = self.sim.grid
        thieves = len(self.sim.theft.events) if self.sim.theft is not None else 0
        return (f"{len(g.customers)} customers on {len(g.transformers)} transformers, "
                f"{len(g.feeders)} feeders; {thieves} theft/tamper scenarios; "
                f"{len(self.gateways)} edge agents; {self.opt.ingestors} ingestors")

    # -- streaming --------------------------------------------------------------------------
    def _agents(self, endpoints: list[dict[str, Any]]) -> None:
        from edge.agent import Agent, ClockWatch
        from edge.config import AgentConfig, BrokerSettings, MeterConfig

        assert self.clock is not None and self.sim is not None
        models = self.sim.grid.meter_models()
        clock = self.clock
        for ep in endpoints:
            gw = str(ep["gateway_id"])
            cert, key = issue_tls(self.state_dir, gw)
            meters = [MeterConfig(id=u["meter_id"], map=models[u["meter_id"]], host=ep["host"],
                                  port=ep["port"], unit_id=u["unit_id"]) for u in ep["units"]]
            cfg = AgentConfig(
                agent_id=gw, poll_interval_s=POLL_S, modbus_timeout_s=self.opt.modbus_timeout_s,
                # no start offsets between links: the clock stands still during a cycle, so an
                # offset would only cost real time
                modbus_retries=0, stagger_fraction=0.0,
                meters=meters, signing_key=self.work / "pki" / "agents" / gw / "signing.key",
                outbox=self.work / "outbox" / f"{gw}.db",
                broker=BrokerSettings(host=self.svc["mqtt_host"], port=self.svc["mqtt_port"],
                                      ca=Path(self.svc["ca_cert"]), cert=cert, key=key,
                                      resend_after_s=10))
            # the agents live on the simulated clock, as their meters do
            watch = ClockWatch(wall=clock.now_ms, mono=clock.now_ms)
            agent = Agent(cfg, wall_ms=clock.now_ms, clock=watch)
            # circuit breakers and bus budgets count simulated seconds too, or a breaker that
            # opened would wait 30 real minutes (2 poll intervals) before probing again
            agent.poller.mono = clock.now
            self.agents.append(agent)

    async def stream(self) -> None:
        """Stream `opt.days` simulated days through the real agents, in lock step.

        The clock is manual: it moves to poll instant k only after every agent has finished and
        sealed its cycle for instant k - 1, so each reading is taken at its instant exactly, and
        the same seed gives the same readings whatever else the machine is doing. A slow
        machine makes the demo take longer, never makes it see a different grid. `opt.speed`,
        if set, is a ceiling on the pace (simulated seconds per real second), not a promise.
        """
        from firmware_sim.clock import SimClock
        from firmware_sim.grid_service import start_service

        assert self.sim is not None
        from firmware_sim.faults import FaultPlan, plan_faults
        from firmware_sim.simulation import IMP

        self.clock = SimClock(self.start_s, manual=True)
        # a few meters misbehave as field meters do: exception codes, corrupt frames, dropped
        # connections, clock drift (firmware_sim/faults.py)
        reg0 = {c.meter_id: float(self.sim.cust_rep[i, IMP])
                for i, c in enumerate(self.sim.grid.customers)}
        planned = plan_faults(self.sim.grid.seed, list(reg0), self.opt.fault_rate, reg0)
        # Not the simulator's early register wrap: it wraps at an arbitrary value just above
        # the start (so it happens within a test), which no analysis can tell from a rollback;
        # real meters wrap at their register's modulus, which the analytics know per model.
        # Nor slow or silent meters: they cost real seconds of waiting on every poll (the clock
        # waits for them) and the tests cover those faults on their own.
        faults = FaultPlan(planned.seed, {m: f for m, f in planned.meters.items()
                                          if not (f.rollover_wh or f.slow_prob or f.timeout_prob)})
        service = await start_service(self.sim, self.clock, base_port=0, faults=faults)
        try:
            self._agents(service.endpoints)
            for a in self.agents:
                a.publisher.start()
            ticks = int(self.opt.days * 86_400 // POLL_S)
            outage = self._outage_plan(service.endpoints, ticks) if self.opt.outage else None
            progress = report.Progress(self, ticks)
            with progress:
                started = time.monotonic()
                for k in range(1, ticks + 1):
                    target = self.start_s + k * POLL_S
                    if self.opt.speed:  # a ceiling on the pace, never a deadline
                        await asyncio.sleep(max(0.0, started + k * POLL_S / self.opt.speed
                                                - time.monotonic()))
                    self.clock.advance_to(target)
                    self.sim.advance_to(target)
                    if outage is not None:
                        self._apply_outage(outage, k, faults)
                    # every agent polls and seals instant k; only then may the clock move on
                    await asyncio.gather(*(a.cycle() for a in self.agents))
                    progress.tick(k)
                await self._drain(progress)
        finally:
            # pymodbus clients belong to this event loop: close them while it still runs
            for a in self.agents:
                a.close()
            await asyncio.sleep(0)
            await service.stop()
        from firmware_sim.truth import write_truth

        write_truth(self.sim, self.work / "truth.json")

    async def _drain(self, progress: report.Progress, stall_s: float = 120.0) -> None:
        """Wait until the cloud has committed every sealed envelope, then for the transparency
        log's next signed head to cover them. Give up only after `stall_s` real seconds without
        progress (a loaded machine is slow, not stuck), and say so."""
        last, since = -1, time.monotonic()
        while any(a.outbox.depth for a in self.agents):
            depth = sum(a.outbox.depth for a in self.agents)
            if depth != last:
                last, since = depth, time.monotonic()
            elif time.monotonic() - since > stall_s:
                note = (f"{depth} envelopes still unconfirmed after {stall_s:.0f} s without "
                        f"progress: see the ingest logs in {self.work}")
                self.notes.append(note)
                self.console.print(f"[red]{note}[/red]")
                break
            await asyncio.sleep(0.5)
            progress.refresh()
        since = time.monotonic()
        while time.monotonic() - since < stall_s:
            c = report.counts(self)
            if (c["tree"] or 0) >= c["envelopes"]:
                break
            await asyncio.sleep(0.5)
        progress.refresh()

    def _outage_plan(self, endpoints: list[dict[str, Any]], ticks: int) -> dict[str, Any]:
        """One transformer's low-voltage side loses supply for a simulated hour, 40% into
        the run: its meters go dark while the gateway (on its own battery) keeps answering
        0x0B, "target device failed to respond", as RS-485 gateways do."""
        txs = [ep for ep in endpoints if not str(ep["gateway_id"]).endswith("-SUB")]
        ep = txs[len(txs) // 2]
        k_from = max(2, int(ticks * 0.4))
        plan = {"gateway": ep["gateway_id"], "meters": [u["meter_id"] for u in ep["units"]],
                "from": k_from, "to": k_from + 4, "saved": {}}
        start = dt.datetime.fromtimestamp(self.start_s + k_from * POLL_S, dt.UTC)
        (self.work / "outage.json").write_text(json.dumps({
            "gateway": plan["gateway"], "start": start.isoformat(),
            "end": (start + dt.timedelta(hours=1)).isoformat()}))
        return plan

    def _apply_outage(self, plan: dict[str, Any], k: int, faults: Any) -> None:
        from firmware_sim.faults import MeterFaults

        if k == plan["from"]:
            dark = MeterFaults(exception_prob=1.0, exception_code=0x0B)
            for m in plan["meters"]:
                plan["saved"][m] = faults.meters.get(m)
                faults.meters[m] = dark
        elif k == plan["to"]:
            for m in plan["meters"]:
                old = plan["saved"].pop(m, None)
                if old is None:
                    faults.meters.pop(m, None)
                else:
                    faults.meters[m] = old

    # -- report (wattrail/demo/report.py) ----------------------------------------------------
    def report(self) -> None:
        report.stored(self)

    def analyze_and_report(self) -> None:
        """The analytics batch over the streamed period, then what a grid engineer reads."""
        report.findings(self)

    def start_api(self) -> None:
        """The API and dashboard on a free port, with a demo token."""
        import socket

        from cloud.api.tokens import create_token

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, WATTRAIL_DSN=self.dsn,
                   WATTRAIL_CA_CERT=str(self.work / "pki" / "ca.crt"))
        log = open(self.work / "api.log", "wb")  # noqa: SIM115 - lives with the process
        self.logs.append(log)
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "wattrail.cli", "api", "--host", "127.0.0.1", "--port",
             str(port)], env=env, cwd=REPO, stdout=log, stderr=log))
        with psycopg.connect(self.dsn) as conn:
            token = create_token(conn, "admin", "demo").secret
            conn.commit()
        base = f"http://127.0.0.1:{port}"
        self.console.print(f"API docs   {base}/docs\ndashboard  {base}/dashboard/\n"
                           f"demo token {token}  (role admin: reads reports and the audit trail)")

    def shutdown(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(15)
        for log in self.logs:
            log.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="wattrail demo",
                                 description="The whole platform on a simulated grid, on loopback.")
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--speed", type=float, default=None,
                    help="ceiling on the pace, simulated s per real s (default: no ceiling)")
    ap.add_argument("--theft-rate", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fault-rate", type=float, default=0.02)
    ap.add_argument("--keep-running", action="store_true")
    a = ap.parse_args(argv)
    return run(DemoOptions(a.meters, a.days, a.speed, a.theft_rate, a.seed,
                           fault_rate=a.fault_rate, outage=True, keep_running=a.keep_running))


def run(opt: DemoOptions) -> int:
    console = Console()
    work = opt.workdir
    state_dir = CACHE / "demo-services"
    if work.exists():
        shutil.rmtree(work)
    (work / "outbox").mkdir(parents=True)
    console.rule("[bold]Wattrail demo")
    t0 = time.monotonic()
    svc = start_services(state_dir)
    v = svc["versions"]
    console.print(f"services: PostgreSQL {str(v['postgresql']).split()[0]} + TimescaleDB "
                  f"{v['timescaledb']} ({v['timescaledb_license']}), Mosquitto {v['mosquitto']}"
                  f" (mTLS) on 127.0.0.1:{svc['mqtt_port']}")
    dsn = fresh_database(svc["dsn_admin"], "wattrail_demo")
    demo = DemoRun(opt, svc, state_dir, dsn, console)
    try:
        demo.prepare()
        console.print(f"ready in {time.monotonic() - t0:.0f} s: {demo.summary()}")
        asyncio.run(demo.stream())
        demo.report()
        demo.analyze_and_report()
        demo.start_api()
        if not opt.keep_running:
            console.print("(the API stops with the demo: run `wattrail demo --keep-running` to "
                          "browse it)")
        if opt.keep_running:
            console.print("[bold]--keep-running[/bold]: services stay up; Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("interrupted: shutting down")
    finally:
        demo.shutdown()
        if not opt.keep_running:
            services(state_dir, "down")
    return 0


