"""Which public key may sign which envelopes: key certificates of the agents, in memory.

Rules (security/verify.py applies them, in this order, after the signature checks out):
- A key certificate binds (agent id, key id, public key) and is valid for envelopes whose
  signed sent-at lies in [valid_from_ms, valid_to_ms], both ends inclusive like X.509's
  notBefore/notAfter. Outside it: `expired_key`.
- Rotation is by sequence number: a certificate with `from_seq = N` takes over the agent's
  signing at seq N. The previous key keeps signing seqs below N (those envelopes stay valid
  forever); the old key used at or after N is `revoked_key` (it was retired by the rotation),
  and a key used below its own `from_seq` is `expired_key` (not yet valid for that seq).
- `revoked_at_ms` (from the CRL) rejects envelopes received (by the cloud's clock, when the
  caller knows it) or sent at or after the revocation as `revoked_key`; earlier envelopes stay
  valid, so revoking a key does not erase the history it signed. A thief can backdate sent-at,
  but not the cloud's receipt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from security.keys import key_id


class KeyringError(ValueError):
    """A certificate that contradicts the keyring or itself; the operator must fix the input."""

    def __init__(self, message: str, *, agent_id: str, kid: bytes) -> None:
        self.agent_id = agent_id
        self.kid = kid
        super().__init__(f"{message} [agent {agent_id!r}, kid {kid.hex()}]")


@dataclass(frozen=True, slots=True)
class KeyCertificate:
    agent_id: str
    kid: bytes
    public_key: bytes  # raw 32-byte Ed25519 public key
    valid_from_ms: int
    valid_to_ms: int
    from_seq: int = 1
    revoked_at_ms: int | None = None

    def __post_init__(self) -> None:
        if len(self.public_key) != 32 or key_id(self.public_key) != self.kid:
            raise KeyringError("kid is not SHA-256(public key)[:16]", agent_id=self.agent_id, kid=self.kid)
        if self.from_seq < 1 or self.valid_from_ms > self.valid_to_ms:
            raise KeyringError("from_seq < 1 or empty validity window", agent_id=self.agent_id, kid=self.kid)


class Keyring:
    """Key certificates by (agent id, key id). Not thread-safe: one per ingest loop or audit."""

    def __init__(self, certs: Iterable[KeyCertificate] = ()) -> None:
        self._certs: dict[tuple[str, bytes], KeyCertificate] = {}
        for cert in certs:
            self.add(cert)

    def add(self, cert: KeyCertificate) -> None:
        """Add a certificate, or replace one with the same key (e.g. to record a revocation)."""
        for other in self.for_agent(cert.agent_id):
            if other.kid != cert.kid and other.from_seq == cert.from_seq:
                raise KeyringError(
                    f"two keys take over at seq {cert.from_seq}", agent_id=cert.agent_id, kid=cert.kid
                )
        old = self._certs.get((cert.agent_id, cert.kid))
        if old is not None and old.public_key != cert.public_key:  # pragma: no cover - kid = hash
            raise KeyringError("kid already bound to another key", agent_id=cert.agent_id, kid=cert.kid)
        self._certs[(cert.agent_id, cert.kid)] = cert

    def revoke(self, agent_id: str, kid: bytes, at_ms: int) -> KeyCertificate:
        cert = self.get(agent_id, kid)
        if cert is None:
            raise KeyringError("no such key to revoke", agent_id=agent_id, kid=kid)
        revoked = replace(cert, revoked_at_ms=at_ms)
        self._certs[(agent_id, kid)] = revoked
        return revoked

    def get(self, agent_id: str, kid: bytes) -> KeyCertificate | None:
        return self._certs.get((agent_id, kid))

    def for_agent(self, agent_id: str) -> list[KeyCertificate]:
        """The agent's certificates in rotation order (by `from_seq`)."""
        return sorted((c for (a, _), c in self._certs.items() if a == agent_id), key=lambda c: c.from_seq)

    def successor(self, cert: KeyCertificate) -> KeyCertificate | None:
        """The certificate that took over from `cert`, if the agent has rotated since."""
        later = [c for c in self.for_agent(cert.agent_id) if c.from_seq > cert.from_seq]
        return later[0] if later else None

    def __len__(self) -> int:
        return len(self._certs)
