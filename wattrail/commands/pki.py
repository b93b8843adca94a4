"""`wattrail pki ...`: the device CA, agent, broker and service identities, revocation
(security/pki.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Device PKI: the Wattrail CA, agent, broker and service identities, "
                  "revocation.",
                  no_args_is_help=True)
DirOpt = Annotated[Path, typer.Option("--dir", help="the CA folder", envvar="WATTRAIL_PKI_DIR")]


def _fail(exc: Exception) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command()
def init(directory: DirOpt = Path("pki"),
         name: Annotated[str, typer.Option(help="the CA's common name")] = "Wattrail device CA",
         days: Annotated[int, typer.Option(help="validity in days")] = 3650) -> None:
    """Create the Wattrail CA (ca.key 0600, ca.crt, an empty CRL). Refuses to overwrite one."""
    from security.pki import PkiError, init_ca

    try:
        cert = init_ca(directory, name=name, days=days)
    except PkiError as exc:
        raise _fail(exc) from exc
    typer.echo(f"CA {cert.subject.rfc4514_string()} in {directory} "
               f"(valid until {cert.not_valid_after_utc:%Y-%m-%d})")


@app.command("issue-agent")
def issue_agent_cmd(
    agent_id: Annotated[str, typer.Argument(help="the agent id: certificate CN and topic level")],
    directory: DirOpt = Path("pki"),
    days: Annotated[int, typer.Option(help="validity in days")] = 365,
    from_seq: Annotated[int, typer.Option(
        help="key rotation: the new signing key signs from this seq on")] = 1,
) -> None:
    """Issue an agent identity: a TLS key + certificate (CN = agent id) for the broker and an
    Ed25519 signing key with a certificate binding it to the agent id, key id and validity."""
    from protocols.topics import InvalidAgentId
    from security.pki import PkiError, issue_agent

    try:
        creds = issue_agent(directory, agent_id, days=days, from_seq=from_seq)
    except (PkiError, InvalidAgentId) as exc:
        raise _fail(exc) from exc
    typer.echo(f"agent {agent_id}: key id {creds.key_cert.kid.hex()} (from seq {from_seq})")
    for label, path in (("TLS key", creds.tls_key), ("TLS certificate", creds.tls_cert),
                        ("signing key", creds.signing_key),
                        ("signing certificate", creds.signing_cert), ("CA", creds.ca_cert)):
        typer.echo(f"  {label:20} {path}")


def _hex(text: str) -> int | None:
    t = text.replace(":", "")
    return int(t, 16) if t and all(c in "0123456789abcdefABCDEF" for c in t) else None


@app.command()
def revoke(
    target: Annotated[str, typer.Argument(
        help="an agent id (all its certificates) or a certificate's hex serial, with or "
             "without 0x or colons")],
    directory: DirOpt = Path("pki"),
) -> None:
    """Revoke certificates and write a fresh signed CRL (reload the broker to apply it)."""
    from security.pki import PkiError
    from security.pki import revoke as do_revoke

    value: int | str = target
    if target.lower().startswith("0x"):
        try:
            value = int(target, 16)
        except ValueError as exc:
            raise _fail(ValueError(f"{target!r} is not a hex serial")) from exc
    try:
        crl = do_revoke(directory, value)
    except PkiError as exc:
        # no agent of that name: a bare hex serial (as `openssl x509 -serial` prints it)?
        serial = _hex(target) if isinstance(value, str) else None
        if serial is None:
            raise _fail(exc) from exc
        try:
            crl = do_revoke(directory, serial)
        except PkiError as exc2:
            raise _fail(PkiError(f"no agent and no certificate serial {target!r} in this CA",
                                 path=directory)) from exc2
    typer.echo(f"revoked {target}; CRL now lists {len(list(crl))} certificate(s): "
               f"{directory / 'crl.pem'}")


@app.command("issue-server")
def issue_server_cmd(
    name: Annotated[str, typer.Argument(help="the server's name: certificate CN and folder")],
    directory: DirOpt = Path("pki"),
    dns: Annotated[list[str] | None, typer.Option(
        "--dns", help="a DNS name clients dial (repeatable); default: NAME")] = None,
    ip: Annotated[list[str] | None, typer.Option(
        "--ip", help="an IP address clients dial (repeatable)")] = None,
    days: Annotated[int, typer.Option(help="validity in days")] = 825,
) -> None:
    """Issue a TLS server certificate (serverAuth, SubjectAltName), e.g. the broker's:
    servers/NAME/tls.key (0600) and tls.crt. Re-running issues a new one."""
    from security.pki import PkiError, issue_server

    try:
        creds = issue_server(directory, name, dns_names=dns or (), ip_addresses=ip or (), days=days)
    except PkiError as exc:
        raise _fail(exc) from exc
    typer.echo(f"server {name}: {', '.join([*(dns or ()), *(ip or ())]) or name}")
    for label, path in (("TLS key", creds.key), ("TLS certificate", creds.cert), ("CA", creds.ca_cert)):
        typer.echo(f"  {label:20} {path}")


@app.command("issue-service")
def issue_service_cmd(
    name: Annotated[str, typer.Argument(
        help="the service's CN, starting wattrail- (e.g. wattrail-ingestor, as the broker ACL names)")],
    directory: DirOpt = Path("pki"),
    days: Annotated[int, typer.Option(help="validity in days")] = 365,
) -> None:
    """Issue a cloud service's TLS client certificate (clientAuth, CN = NAME):
    services/NAME/tls.key (0600) and tls.crt. Re-running issues a new one."""
    from security.pki import PkiError, issue_service

    try:
        creds = issue_service(directory, name, days=days)
    except PkiError as exc:
        raise _fail(exc) from exc
    typer.echo(f"service {name}")
    for label, path in (("TLS key", creds.key), ("TLS certificate", creds.cert), ("CA", creds.ca_cert)):
        typer.echo(f"  {label:20} {path}")


@app.command("init-log-key")
def init_log_key(directory: DirOpt = Path("pki")) -> None:
    """Create the transparency log's Ed25519 signing key (log.key 0600) and its public key
    (log.pub, for auditors). Refuses to overwrite an existing key."""
    from security.pki import PkiError
    from security.pki import init_log_key as do_init

    try:
        path, kid = do_init(directory)
    except PkiError as exc:
        raise _fail(exc) from exc
    typer.echo(f"log key {kid.hex()}: {path} (public: {directory / 'log.pub'})")
