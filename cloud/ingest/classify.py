"""Sans-IO first pass over one MQTT message: is it a well-formed envelope, signed by a key the
registry knows, sent under the topic of the agent that signed it?

Chain questions (seen before? same bytes? does prev-hash match?) are NOT answered here: they
need the database, which any ingestor shares, and are settled by `cloud/ingest/writer.py` in
the same transaction that stores the rows. This pass only needs the keyring, so it is pure and
can run on every message as it arrives.

It also refuses, whole, a validly signed envelope holding a value the store cannot hold or a
timestamp outside the plausible window (`cloud/ingest/limits.py`): such a value would make the
database refuse the batch. "Now" for that window is the message's `received_ms`, so this pass
stays pure and a test decides the time.

Every message ends in exactly one bucket, and none is ever dropped unrecorded:
- CANDIDATE: cryptographically valid and storable; the writer decides store / duplicate /
  conflict;
- QUARANTINE: with a reason from `QuarantineReason`, a human detail, and the raw bytes.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from cloud.ingest.limits import Limits, check_payload
from protocols.envelope import Payload
from protocols.errors import ProtocolError
from protocols.topics import parse_topic
from security.chain import ChainState
from security.keyring import Keyring
from security.verify import Status, verify_envelope

MAX_ENVELOPE_BYTES = 4 * 1024 * 1024  # a poll cycle of ~10k meters; more is an attack or a bug


class QuarantineReason(enum.StrEnum):
    """Why a message was not stored. Values are stored in the database: never rename."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"
    CONFLICT = "conflict"  # same (agent, seq) with other bytes, or a broken prev-hash link
    TOPIC_MISMATCH = "topic_mismatch"  # signed by agent A, published under agent B's topic
    BAD_TOPIC = "bad_topic"
    OVERSIZED = "oversized"
    STORE_ERROR = "store_error"  # valid, but the database refused its rows (see detail)
    IMPLAUSIBLE_TIME = "implausible_time"  # a timestamp outside the plausible window
    UNSTORABLE = "unstorable"  # a value the readings/envelopes columns cannot hold as signed
    INTERNAL_ERROR = "internal_error"  # our code failed on this message (detail: the exception)


_FROM_STATUS = {
    Status.MALFORMED: QuarantineReason.MALFORMED,
    Status.BAD_SIGNATURE: QuarantineReason.BAD_SIGNATURE,
    Status.UNKNOWN_KEY: QuarantineReason.UNKNOWN_KEY,
    Status.REVOKED_KEY: QuarantineReason.REVOKED_KEY,
    Status.EXPIRED_KEY: QuarantineReason.EXPIRED_KEY,
    Status.CONFLICT: QuarantineReason.CONFLICT,
}


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int  # the broker's message id, acknowledged only after the commit
    received_ms: int  # the ingestor's clock at receipt: "now" for the plausible window


@dataclass(frozen=True, slots=True)
class Candidate:
    msg: Incoming
    payload: Payload
    envelope_hash: bytes

    @property
    def agent_id(self) -> str:
        return self.payload.agent_id

    @property
    def seq(self) -> int:
        return self.payload.seq


@dataclass(frozen=True, slots=True)
class Quarantine:
    msg: Incoming
    reason: QuarantineReason
    detail: str
    envelope_hash: bytes
    agent_id: str | None = None
    seq: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


DEFAULT_LIMITS = Limits()


def classify(msg: Incoming, keyring: Keyring, *, max_bytes: int = MAX_ENVELOPE_BYTES,
             limits: Limits = DEFAULT_LIMITS) -> Candidate | Quarantine:
    digest = hashlib.sha256(msg.payload).digest()
    if len(msg.payload) > max_bytes:
        return Quarantine(msg, QuarantineReason.OVERSIZED,
                          f"{len(msg.payload)} bytes > limit {max_bytes}", digest)
    try:
        topic_agent, _kind = parse_topic(msg.topic)
    except ProtocolError as exc:
        return Quarantine(msg, QuarantineReason.BAD_TOPIC, str(exc), digest)
    # A fresh chain: only format, key and signature are judged here (see module docstring).
    # Revocation is judged at our receipt too: a revoked key cannot backdate its way in.
    verdict = verify_envelope(msg.payload, keyring, ChainState(), received_at_ms=msg.received_ms)
    if verdict.status in _FROM_STATUS:
        return Quarantine(msg, _FROM_STATUS[verdict.status], verdict.reason, digest,
                          agent_id=verdict.agent_id or topic_agent, seq=verdict.seq)
    payload = verdict.payload
    if payload is None:  # storable verdicts always carry the payload; be explicit anyway
        return Quarantine(msg, QuarantineReason.MALFORMED, "no payload", digest,
                          agent_id=topic_agent)
    if payload.agent_id != topic_agent:
        return Quarantine(
            msg, QuarantineReason.TOPIC_MISMATCH,
            f"envelope of agent {payload.agent_id!r} published under {topic_agent!r}'s topic",
            digest, agent_id=topic_agent, seq=payload.seq)
    refused = check_payload(payload, msg.received_ms, limits)
    if refused is not None:
        reason = (QuarantineReason.IMPLAUSIBLE_TIME if refused.what == "time"
                  else QuarantineReason.UNSTORABLE)
        return Quarantine(msg, reason, refused.detail, digest, agent_id=topic_agent,
                          seq=payload.seq)
    return Candidate(msg, payload, digest)
