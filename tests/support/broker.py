"""A private TLS Mosquitto for tests that must change the broker itself (its CRL, its life),
which the session's shared broker must not see.

It trusts a device CA made with `security.pki` (the same code `wattrail pki` runs), checks the
CA's CRL (`crl.pem`), and serves a certificate that CA issues for 127.0.0.1/localhost. Tests
revoke with `security.pki.revoke` and call `reload()` (SIGHUP), as an operator would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from security.pki import init_ca
from tests.support.net import free_port

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"


def issue_server_cert(pki_dir: Path, out: Path) -> tuple[Path, Path]:
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    key_path, crt_path = out / "server.key", out / "server.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt_path, key_path


class PrivateBroker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        init_ca(self.pki)
        crt, key = issue_server_cert(self.pki, root / "server")
        self.ca = self.pki / "ca.crt"
        self.port = free_port()
        (root / "acl").write_text(ACL.read_text())
        self.log = root / "mosquitto.log"
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(f"""\
per_listener_settings false
allow_anonymous false
acl_file {root / 'acl'}
persistence false
# run as whoever started us, so the 0600 keys stay readable (as scripts/services does)
user {pwd.getpwuid(os.geteuid()).pw_name}
log_dest file {self.log}
log_type all
listener {self.port} 127.0.0.1
protocol mqtt
cafile {self.ca}
certfile {crt}
keyfile {key}
crlfile {self.pki / 'crl.pem'}
require_certificate true
use_identity_as_username true
""")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._stderr = open(root / "mosquitto.stderr", "wb")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=self._stderr)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: "
                                   f"{(self.root / 'mosquitto.stderr').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its configuration, certificates and CRL."""
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)  # the reload happens in its main loop, between network events

    def tls_context(self, cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
