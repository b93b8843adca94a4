"""`wattrail audit verify BUNDLE`: check an audit export offline (security/audit_bundle.py)."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Audit tools for security teams (offline, no database needed).",
                  no_args_is_help=True)


MAX_BUNDLE_BYTES = 256 * 1024 * 1024  # bundle.json unpacked; 5,000 envelopes export to ~20 MB
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024  # the ingestor's own limit per envelope


def _member(z: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, read in pieces and refused past `limit`: the size a zip declares can
    be a lie, and a zip bomb unpacks a megabyte into gigabytes."""
    out = bytearray()
    with z.open(name) as f:
        while chunk := f.read(1024 * 1024):
            out += chunk
            if len(out) > limit:
                raise ValueError(f"{name} unpacks to more than {limit} bytes: not an export")
    return bytes(out)


def _load(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The bundle, plus problems found while reading a zip (files that disagree)."""
    if zipfile.is_zipfile(path):
        problems = []
        with zipfile.ZipFile(path) as z:
            bundle = json.loads(_member(z, "bundle.json", MAX_BUNDLE_BYTES))
            names = set(z.namelist())
            for e in bundle.get("envelopes", []):
                name = f"envelopes/{int(e['seq']):020d}.cose"
                if name in names and _member(z, name, MAX_ENVELOPE_BYTES) != \
                        base64.b64decode(e["raw_base64"]):
                    problems.append(f"{name} differs from the bytes inside bundle.json")
        return bundle, problems
    return json.loads(path.read_text()), []


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                           help="an export from /v1/audit/export (JSON or zip)")],
    ca: Annotated[Path | None, typer.Option(
        help="the device CA certificate you trust; default: the one inside the bundle")] = None,
    log_key: Annotated[Path | None, typer.Option(
        help="the transparency log's public key (log.pub); default: the one in the bundle")
    ] = None,
    tree_head: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False,
        help="a signed tree head you saved when it was published (the JSON of GET "
             "/v1/audit/log/tree-head): the bundle's log must extend it; export with "
             "known_tree_size=<its tree_size>")] = None,
) -> None:
    """Verify every envelope signature against the CA-issued key certificates (validity and
    revocation at signing time), the chain (order, links, undeclared gaps), every inclusion
    proof against the signed tree head, consistency between heads (and with --tree-head, with
    the head you hold), that every leaf the log holds for the agent has its envelope, and that
    the stored readings are the signed ones. Exit 0: it holds; 1: findings; 2: unreadable
    bundle or anchor."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from security.audit_bundle import verify_bundle
    from security.audit_report import Finding

    out = Console()
    try:
        data, zip_problems = _load(bundle)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        out.print(f"[red]cannot read {bundle}:[/red] {exc}")
        raise typer.Exit(2) from exc
    anchors = []
    ca_pem = ca.read_bytes() if ca else str(data.get("ca_certificate_pem") or "").encode()
    log_pem = log_key.read_bytes() if log_key else str(data.get("log_public_key_pem") or "").encode()
    if not ca_pem:
        out.print("[red]no CA certificate: pass --ca (the bundle carries none)[/red]")
        raise typer.Exit(2)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    pub = serialization.load_pem_public_key(log_pem) if log_pem else None
    if pub is not None and not isinstance(pub, Ed25519PublicKey):
        out.print("[red]the log key is not Ed25519[/red]")
        raise typer.Exit(2)
    pinned = None
    if tree_head is not None:
        try:
            pinned = json.loads(tree_head.read_text())
            int(pinned["tree_size"]), bytes.fromhex(pinned["root_hash"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out.print(f"[red]cannot read the tree head {tree_head}:[/red] {exc}")
            raise typer.Exit(2) from exc
    if ca is None or log_key is None:
        anchors.append("trust anchors taken from the bundle itself: compare these fingerprints "
                       "with the ones you hold")
    if pinned is None:
        anchors.append("no --tree-head: the log is checked against the heads in the bundle only, "
                       "so a database that lost leaves or heads since you last looked can pass")
    if "log_leaves" not in data:
        anchors.append("the bundle lists no log leaves: a deleted envelope looks like a declared "
                       "gap (export it again from a current server)")
    if "readings" not in data:
        anchors.append("the bundle carries no readings rows: stored values were not compared "
                       "with the signed ones")
    rep = verify_bundle(data, ca_cert, pub, pinned)
    rep.findings += [Finding("digest", p) for p in zip_problems]
    out.print(f"bundle {bundle.name}: agent {rep.agent_id}, {rep.envelopes} envelopes, "
              f"{rep.verified} signatures verified, {rep.proofs_checked} inclusion proofs, "
              f"{rep.heads_checked} tree heads")
    out.print(f"CA {ca_cert.subject.rfc4514_string()} sha256:"
              f"{ca_cert.fingerprint(hashes.SHA256()).hex()[:32]}")
    if pinned is not None:
        out.print(f"pinned tree head: size {pinned['tree_size']}, root {pinned['root_hash'][:16]}…")
    for a in anchors:
        out.print(f"[yellow]note:[/yellow] {a}")
    for n in rep.notes:
        out.print(f"[yellow]note:[/yellow] seq {n.seq}: {n.kind} ({n.detail})")
    if rep.ok:
        out.print("[green]OK[/green]: every check holds")
        return
    t = Table(title=f"{len(rep.findings)} finding(s)")
    for col in ("kind", "seq", "detail"):
        t.add_column(col)
    for f in rep.findings:
        t.add_row(f.kind, "" if f.seq is None else str(f.seq), f.detail)
    out.print(t)
    raise typer.Exit(1)
