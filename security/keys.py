"""Ed25519 signing keys of the agents: generate, save (PEM, 0600), load, key id, sign.

The key id is the first 16 bytes of SHA-256 over the 32-byte raw public key: short enough for
every envelope, long enough that two keys never collide by accident, and computable by anyone
who holds the public key (no registry needed to name a key).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.envelope import encode_sign1, protected_header, sig_structure

KID_LEN = 16
PRIVATE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that cannot be used; `path` says which one."""

    def __init__(self, message: str, *, path: Path) -> None:
        self.path = path
        super().__init__(f"{message}: {path}")


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey | bytes) -> bytes:
    """First 16 bytes of SHA-256 of the raw 32-byte public key."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return hashlib.sha256(raw).digest()[:KID_LEN]


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` so that it is never readable by others, not even for an instant.

    The file is created 0600 under a temporary name and renamed into place, so a crash leaves
    either the old file or the new one, and an existing file's looser mode is not inherited.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, PRIVATE_MODE)  # O_CREAT's mode is filtered by umask; make it exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """PKCS#8 PEM, unencrypted (the agent starts unattended), mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(Path(path), pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a key saved by `save_private_key`; refuses files others can read or that are not Ed25519."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"private key is readable by others (mode {mode:o}); chmod 600 it", path=path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"not an unencrypted PEM private key ({exc})", path=path) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"expected an Ed25519 key, found {type(key).__name__}", path=path)
    return key


def sign_envelope(key: Ed25519PrivateKey, kid: bytes, payload_bytes: bytes) -> bytes:
    """The complete COSE_Sign1 envelope bytes for an encoded payload."""
    if kid != key_id(key):  # a wrong kid would make every envelope "unknown_key" downstream
        raise ValueError("kid does not belong to this key; use key_id(key)")
    protected = protected_header(kid)
    signature = key.sign(sig_structure(protected, payload_bytes))
    return encode_sign1(protected, payload_bytes, signature)
