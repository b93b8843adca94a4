"""`wattrail deploy init`: the one-shot, idempotent bootstrap of a deployment (docker-compose's
`pki-init` job, or by hand on a host).

    wattrail deploy init --pki-dir /var/lib/wattrail/pki --broker-dir /var/lib/wattrail/broker \\
        --grid grid.json --endpoints endpoints.json --agents-dir agents --dsn $WATTRAIL_DSN

Each step looks first and acts only when something is missing or stale, so a second run changes
nothing and says so (every line `unchanged`):
  1. the CA (security.pki.init_ca), its CRL re-signed when it expires within a week, the
     transparency-log key;
  2. the broker's server certificate (SubjectAltName = the names clients dial), the ingestor's
     client certificate (CN wattrail-ingestor, as deploy/mosquitto/acl names it), and a
     `wattrail-healthcheck` client for the broker's container healthcheck; re-issued when
     missing, revoked, from another CA, expiring within 30 days or (server) for other names;
  3. an identity per agent: the gateways of the simulator's endpoints file and `--agent`s
     (issued once; a revoked or expired agent is reported, never silently replaced);
  4. the folder Mosquitto reads (deploy/mosquitto/mosquitto.conf): ca.crt, server.crt,
     server.key, ca.crl (from crl.pem), healthcheck.crt/key; keys 0640 for the broker's group;
  5. with a DSN: migrations (cloud.store.migrate), the grid file's topology
     (cloud.store.topology), the agents' signing keys (cloud.ingest.registry), and an API token
     into --token-file when that file holds no active token;
  6. an agent TOML per gateway of the endpoints file (edge.config validates each one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Deployment: bootstrap identities, broker certificates, database and "
                       "agent configurations.", no_args_is_help=True)

INGESTOR = "wattrail-ingestor"  # the broker ACL's user (deploy/mosquitto/acl)
HEALTHCHECK = "wattrail-healthcheck"
RENEW_BEFORE = dt.timedelta(days=30)
CRL_RENEW_BEFORE = dt.timedelta(days=7)
BROKER_KEY_MODE = 0o640  # the broker container reads it through the group it shares with us


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, state: str) -> None:
        self.lines.append((what, state))

    @property
    def changed(self) -> int:
        return sum(1 for _, s in self.lines if not s.startswith(("unchanged", "skipped")))


# -- PKI -------------------------------------------------------------------------------------
def _load(path: Path) -> Any:
    from cryptography import x509  # imported late: `wattrail --help` stays fast

    return x509.load_pem_x509_certificate(path.read_bytes())


def _stale(pki: Path, cert_path: Path, key_path: Path, now: dt.datetime) -> str | None:
    """Why a certificate must be re-issued, or None if it is fine."""
    if not cert_path.exists() or not key_path.exists():
        return "missing"
    from cryptography.exceptions import InvalidSignature

    cert, ca = _load(cert_path), _load(pki / "ca.crt")
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as exc:  # e.g. a CA made afresh since
        return f"not issued by this CA ({type(exc).__name__})"
    revoked = json.loads((pki / "revoked.json").read_text()) if (pki / "revoked.json").exists() else {}
    if f"{cert.serial_number:x}" in revoked:
        return "revoked"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def _san(cert_path: Path) -> tuple[set[str], set[str]]:
    from cryptography import x509

    san = _load(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)), ips


def _ips(addresses: list[str]) -> set[str]:
    import ipaddress

    try:
        return {str(ipaddress.ip_address(a)) for a in addresses}
    except ValueError as exc:
        from security.pki import PkiError

        raise PkiError(f"not an IP address: {exc}") from exc


def ensure_pki(pki: Path, report: Report, *, broker_name: str, broker_dns: list[str],
               broker_ips: list[str], agents: Iterable[str], now: dt.datetime) -> None:
    from cryptography import x509

    from security.pki import (
        init_ca,
        init_log_key,
        issue_agent,
        issue_server,
        issue_service,
        write_crl,
    )

    if (pki / "ca.key").exists():
        report.add(f"CA {pki}", "unchanged")
    else:
        init_ca(pki)
        report.add(f"CA {pki}", "created")
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes()) if (pki / "crl.pem").exists() else None
    if crl is None or crl.next_update_utc is None or crl.next_update_utc - now < CRL_RENEW_BEFORE:
        write_crl(pki)
        report.add("CRL", "re-signed")
    else:
        report.add("CRL", f"unchanged (valid until {crl.next_update_utc:%Y-%m-%d})")
    if (pki / "log.key").exists():
        report.add("transparency-log key", "unchanged")
    else:
        init_log_key(pki)
        report.add("transparency-log key", "created")

    srv = pki / "servers" / broker_name
    why = _stale(pki, srv / "tls.crt", srv / "tls.key", now)
    if why is None and _san(srv / "tls.crt") != (set(broker_dns), _ips(broker_ips)):
        why = "other names"
    if why:
        issue_server(pki, broker_name, dns_names=broker_dns, ip_addresses=broker_ips)
        report.add(f"broker certificate {broker_name} ({', '.join(broker_dns + broker_ips)})",
                   f"issued ({why})")
    else:
        report.add(f"broker certificate {broker_name}", "unchanged")
    for name in (INGESTOR, HEALTHCHECK):
        d = pki / "services" / name
        why = _stale(pki, d / "tls.crt", d / "tls.key", now)
        if why:
            issue_service(pki, name)
        report.add(f"service certificate {name}", f"issued ({why})" if why else "unchanged")
    for agent in agents:
        d = pki / "agents" / agent
        if not all((d / f).exists() for f in ("tls.key", "tls.crt", "signing.key", "signing.crt")):
            issue_agent(pki, agent)
            report.add(f"agent identity {agent}", "issued")
            continue
        why = _stale(pki, d / "signing.crt", d / "signing.key", now)
        report.add(f"agent identity {agent}", "unchanged" if why is None else
                   f"unchanged, but {why}: rotate with `wattrail pki issue-agent {agent} --from-seq N`")


# -- files -----------------------------------------------------------------------------------
def sync_file(path: Path, data: bytes, mode: int = 0o644) -> str:
    """Write `data` to `path` unless it already holds exactly that (and that mode); returns
    created / updated / unchanged. Written under a temporary name and renamed into place."""
    if path.exists() and path.read_bytes() == data:
        if (path.stat().st_mode & 0o777) == mode:
            return "unchanged"
        os.chmod(path, mode)
        return "updated (mode)"
    state = "updated" if path.exists() else "created"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return state


def write_broker_dir(pki: Path, broker_dir: Path, broker_name: str, report: Report) -> None:
    """The layout deploy/mosquitto/mosquitto.conf reads from /mosquitto/certs."""
    srv, hc = pki / "servers" / broker_name, pki / "services" / HEALTHCHECK
    for name, src, mode in (("ca.crt", pki / "ca.crt", 0o644), ("server.crt", srv / "tls.crt", 0o644),
                            ("server.key", srv / "tls.key", BROKER_KEY_MODE),
                            ("ca.crl", pki / "crl.pem", 0o644),
                            ("healthcheck.crt", hc / "tls.crt", 0o644),
                            ("healthcheck.key", hc / "tls.key", BROKER_KEY_MODE)):
        report.add(f"broker file {broker_dir / name}", sync_file(broker_dir / name, src.read_bytes(), mode))


# -- agent configurations --------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def agent_toml(doc: dict[str, Any]) -> str:
    """TOML for an agent configuration dict (scalars, a [broker] table, [[meters]])."""
    out = ["# written by `wattrail deploy init`; edits are overwritten on its next run",
           "# (see docs/edge-agent.md for every key)"]
    out += [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict | list)]
    out += ["", "[broker]"] + [f"{k} = {_toml_value(v)}" for k, v in doc["broker"].items()]
    for m in doc["meters"]:
        out += ["", "[[meters]]"] + [f"{k} = {_toml_value(v)}" for k, v in m.items()]
    return "\n".join(out) + "\n"


def agent_configs(endpoints_file: Path, grid_file: Path, *, pki: Path, outbox_dir: Path,
                  meter_host: str | None, mqtt_host: str, mqtt_port: int,
                  poll_interval_s: float) -> dict[str, dict[str, Any]]:
    """agent id -> configuration dict, one per gateway of the simulator's endpoints file
    (the same meters, map and units the demo gives its agents), validated by edge.config."""
    from edge.config import AgentConfig
    from firmware_sim.grid_file import load_grid

    models = load_grid(grid_file).meter_models()
    out: dict[str, dict[str, Any]] = {}
    for ep in json.loads(endpoints_file.read_text())["endpoints"]:
        if ep.get("per_meter"):
            continue  # the simulator's optional one-port-per-meter servers: not a gateway
        gw = str(ep["gateway_id"])
        host = meter_host or (ep["host"] if ep["host"] not in ("0.0.0.0", "::", "") else "127.0.0.1")
        creds = pki / "agents" / gw
        doc: dict[str, Any] = {
            "agent_id": gw, "poll_interval_s": poll_interval_s,
            "signing_key": str(creds / "signing.key"), "outbox": str(outbox_dir / f"{gw}.db"),
            "broker": {"host": mqtt_host, "port": mqtt_port, "ca": str(pki / "ca.crt"),
                       "cert": str(creds / "tls.crt"), "key": str(creds / "tls.key")},
            "meters": [{"id": u["meter_id"], "map": models[u["meter_id"]], "transport": "tcp",
                        "host": host, "port": int(ep["port"]), "unit_id": int(u["unit_id"])}
                       for u in ep["units"]],
        }
        AgentConfig(**doc)  # the agent's own validation, before anything is written
        out[gw] = doc
    return out


# -- database --------------------------------------------------------------------------------
_TOPOLOGY = ("regions", "feeders", "transformers", "customers", "meters")


def ensure_database(dsn: str, report: Report, *, pki: Path, grid: Path | None,
                    token_file: Path | None, token_role: str, token_name: str) -> None:
    import psycopg

    from cloud.api.tokens import create_token, hash_token
    from cloud.ingest.registry import register_from_pki
    from cloud.store.migrate import migrate
    from cloud.store.topology import import_topology

    with psycopg.connect(dsn, autocommit=True) as conn:
        done = migrate(conn)
        report.add("database schema", f"applied {len(done)} migration(s)" if done else "unchanged")
        if grid is not None:
            def snapshot() -> list[Any]:
                return [conn.execute(f"SELECT count(*), max(updated_at) FROM {t}").fetchone()
                        for t in _TOPOLOGY]
            before = snapshot()
            counts = import_topology(conn, grid)
            what = f"topology {grid.name} ({counts['meters']} meters)"
            report.add(what, "unchanged" if snapshot() == before else "imported")

        def keys() -> Any:
            return conn.execute("SELECT count(*), count(revoked_at) FROM agent_keys").fetchone()
        before_keys = keys()
        registered = register_from_pki(conn, pki)
        report.add(f"signing keys registered ({len(registered)} from the CA)",
                   "unchanged" if keys() == before_keys else "updated")
        if token_file is not None:
            secret = token_file.read_text().strip() if token_file.exists() else ""
            row = conn.execute("SELECT id FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                               [hash_token(secret)]).fetchone() if secret else None
            if row is not None:
                report.add(f"API token {token_file}", f"unchanged (token {row[0]} active)")
            else:
                new = create_token(conn, token_role, token_name)
                sync_file(token_file, (new.secret + "\n").encode(), 0o600)
                report.add(f"API token {token_file}", f"created (token {new.info.id}, {token_role})")


# -- the command -----------------------------------------------------------------------------
@app.command("init")
def init(
    pki_dir: Annotated[Path, typer.Option("--pki-dir", envvar="WATTRAIL_PKI_DIR",
                                          help="the CA folder (created if missing)")] = Path("pki"),
    broker_dir: Annotated[Path | None, typer.Option(
        help="write the broker's certificate folder here (Mosquitto's /mosquitto/certs)")] = None,
    broker_name: Annotated[str, typer.Option(help="the broker certificate's CN")] = "mosquitto",
    broker_dns: Annotated[list[str] | None, typer.Option(
        "--broker-dns", help="a name clients dial the broker by (repeatable) "
                             "[default: mosquitto, localhost]")] = None,
    broker_ip: Annotated[list[str] | None, typer.Option(
        "--broker-ip", help="an address clients dial the broker by (repeatable) [default: 127.0.0.1]")
    ] = None,
    agent: Annotated[list[str] | None, typer.Option(
        "--agent", help="an agent id to give an identity (repeatable)")] = None,
    endpoints: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="the simulator's endpoints file (`wattrail sim "
        "--endpoints`): an identity and, with --agents-dir, a TOML per gateway")] = None,
    grid: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="grid file: imported into the database; meter models "
        "for the agent TOMLs")] = None,
    agents_dir: Annotated[Path | None, typer.Option(
        help="write <agent-id>.toml here (needs --endpoints and --grid)")] = None,
    outbox_dir: Annotated[Path, typer.Option(help="the agents' outbox folder, in their TOML")
                          ] = Path("outbox"),
    meter_host: Annotated[str | None, typer.Option(
        help="host the agents dial the gateways at [default: the endpoints file's]")] = None,
    mqtt_host: Annotated[str, typer.Option(help="broker host, in the agent TOMLs")] = "mosquitto",
    mqtt_port: Annotated[int, typer.Option(help="broker port, in the agent TOMLs")] = 8883,
    poll_interval: Annotated[float, typer.Option(help="seconds, in the agent TOMLs")] = 15.0,
    dsn: Annotated[str | None, typer.Option(
        envvar="WATTRAIL_DSN", help="the database: migrate, import, register (skipped without)")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="keep an active API token in this file (0600), creating one when needed")] = None,
    token_role: Annotated[str, typer.Option(help="the token's role")] = "engineer",
    token_name: Annotated[str, typer.Option(help="the token's name")] = "deploy init",
) -> None:
    """Bootstrap a deployment, idempotently: CA, log key, broker and ingestor certificates,
    agent identities, the broker's certificate folder, migrations, topology, key registry, an
    API token, agent TOMLs. A second run changes nothing and says so."""
    import psycopg

    from security.pki import PkiError

    if agents_dir is not None and (endpoints is None or grid is None):
        raise typer.BadParameter("needs --endpoints and --grid", param_hint="'--agents-dir'")
    now = dt.datetime.now(dt.UTC)
    report = Report()
    configs: dict[str, dict[str, Any]] = {}
    try:
        if endpoints is not None and grid is not None:
            configs = agent_configs(endpoints, grid, pki=pki_dir.absolute(), outbox_dir=outbox_dir.absolute(),
                                    meter_host=meter_host, mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                                    poll_interval_s=poll_interval)
        ids = list(dict.fromkeys([*(agent or ()), *_gateways(endpoints)]))
        ensure_pki(pki_dir, report, broker_name=broker_name,
                   broker_dns=broker_dns or ["mosquitto", "localhost"],
                   broker_ips=broker_ip or ["127.0.0.1"], agents=ids, now=now)
        if broker_dir is not None:
            write_broker_dir(pki_dir, broker_dir, broker_name, report)
        if dsn:
            ensure_database(dsn, report, pki=pki_dir, grid=grid, token_file=token_file,
                            token_role=token_role, token_name=token_name)
        else:
            report.add("database", "skipped (no --dsn / WATTRAIL_DSN)")
        if agents_dir is not None:
            for gw, doc in configs.items():
                report.add(f"agent config {agents_dir / (gw + '.toml')}",
                           sync_file(agents_dir / f"{gw}.toml", agent_toml(doc).encode()))
    except (PkiError, ValueError, OSError) as exc:
        _print(report)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except psycopg.Error as exc:
        typer.echo(f"error: the database refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    _print(report)
    n = report.changed
    typer.echo(f"{n} change(s)" if n else "nothing to do: everything was already in place")


def _print(report: Report) -> None:
    for what, state in report.lines:
        typer.echo(f"  {what}: {state}")


def _gateways(endpoints: Path | None) -> list[str]:
    if endpoints is None:
        return []
    return [str(ep["gateway_id"]) for ep in json.loads(endpoints.read_text())["endpoints"]
            if not ep.get("per_meter")]
