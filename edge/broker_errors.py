"""Why the broker would not have us, in words an operator can act on.

paho-mqtt reports a refused TLS client certificate as a bare "connection lost": with TLS 1.3
the client's handshake completes *before* the broker checks our certificate, and the broker's
alert (revoked, unknown CA) arrives on the first read, where paho swallows it. So after a
failed attempt the publisher may run `probe_tls`: one handshake plus one read with the same
files, which surfaces the alert, and `explain_tls_error` says whose fault it is:

- the broker refused *our* certificate (revoked, issued by a CA it does not trust, expired):
  retrying will not help until someone issues or un-revokes the agent's identity;
- *we* refused the broker's certificate (our `ca` file does not match the broker);
- the network (refused, unreachable, timed out): retrying is the fix.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

# OpenSSL alert reasons the broker sends about our client certificate
_CLIENT_CERT_REJECTED = {
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "it is revoked (the broker's CRL lists it)",
    "TLSV1_ALERT_UNKNOWN_CA": "it was issued by a CA the broker does not trust",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker found it invalid",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the broker cannot use it (key usage?)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker got none",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the handshake failed (no common cipher or bad cert)",
}


def explain_tls_error(exc: BaseException, *, ca: Path, cert: Path) -> str:
    """One line: what failed and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"we refused the broker's certificate: {exc.verify_message} (check that "
                f"{ca} is the CA that issued the broker's certificate)")
    if isinstance(exc, ssl.SSLError):
        why = _CLIENT_CERT_REJECTED.get(str(exc.reason))
        if why is not None:
            return (f"the broker rejected our client certificate {cert}: {why}; the agent needs "
                    f"a valid identity (wattrail pki issue-agent) [{exc.reason}]")
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: the broker is down or not listening there"
    if isinstance(exc, TimeoutError):
        return "timed out reaching the broker"
    return f"{type(exc).__name__}: {exc}"


def probe_tls(host: str, port: int, *, ca: Path, cert: Path, key: Path,
              timeout: float = 3.0) -> str | None:
    """Handshake and read once; the broker's verdict on our certificate, or None if it kept
    the connection open (then the failure was not about TLS)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        return f"cannot load our certificate {cert} / key {key}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(min(timeout, 1.0))
            try:
                tls.recv(1)  # the broker waits for our CONNECT; an alert arrives at once
            except TimeoutError:
                return None
            return None
    except (OSError, ssl.SSLError) as exc:
        return explain_tls_error(exc, ca=ca, cert=cert)
