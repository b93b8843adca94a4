"""Same seed, same grid, same options -> the same stored readings and the same findings,
whatever the machine's load.

The demo's pipeline (simulator -> edge agents -> TLS Mosquitto -> two `wattrail ingest`
processes -> TimescaleDB -> analyze) runs twice on a small grid with the seeded theft plan,
field faults and an outage; the second time with two busy-looping processes beside it (a CPU
hog as big as this 2-core machine). The lock-step clock must make the two runs store the same
rows: a digest of `readings` and of every analysis result table is compared.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from cloud.store.migrate import migrate
from tests.conftest import Services, create_database, drop_database
from tests.support.digest import pipeline_digests
from wattrail.demo.run import DemoRun
from wattrail.demo.setup import DemoOptions

# The timeout only catches a hang: two half-day runs, one beside a CPU hog, take ~2 min here
# quiet and may take several times that on a machine that is busy with other work too.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

HOGS = 2  # one busy process per core


@contextmanager
def cpu_hog(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _run(services: Services, template_db: str, work: Path, tag: str) -> dict[str, tuple[int, str]]:
    import psycopg

    name = create_database(services, template_db, f"t_det_{tag}")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        opt = DemoOptions(meters=120, days=0.5, seed=23, ingestors=2, theft_rate=0.15,
                          fault_rate=0.05, outage=True, workdir=work)
        (work / "outbox").mkdir(parents=True)
        svc = {"mqtt_host": services.mqtt_host, "mqtt_port": services.mqtt_port,
               "ca_cert": str(services.ca_cert)}
        demo = DemoRun(opt, svc, services.tls_dir.parent, dsn, Console(quiet=True))
        try:
            demo.prepare()
            asyncio.run(demo.stream())
            demo.analyze_and_report()
        finally:
            demo.shutdown()
        return pipeline_digests(dsn)
    finally:
        drop_database(services, name)


def test_same_seed_same_rows_quiet_or_loaded(services: Services, template_db: str,
                                             tmp_path: Path) -> None:
    quiet = _run(services, template_db, tmp_path / "quiet", "quiet")
    with cpu_hog(HOGS):
        loaded = _run(services, template_db, tmp_path / "loaded", "loaded")
    # the scenario is not empty: a half day of 15-minute polls of every meter, and findings
    assert quiet["readings"][0] >= 120 * 48
    assert quiet["analysis_suspects"][0] >= 100
    assert quiet["analysis_outages"][0] >= 1  # the injected one
    differ = {t: (quiet[t], loaded[t]) for t in quiet if quiet[t] != loaded[t]}
    assert not differ, f"tables that differ between the quiet and the loaded run: {differ}"
