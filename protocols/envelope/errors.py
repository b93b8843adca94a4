"""Typed errors of the signed-envelope codec, in the `protocols.errors` hierarchy.

    ProtocolError                       (protocols.errors)
    ├── RemoteProtocolError
    │   └── EnvelopeError               the agent (or someone on the path) sent junk
    │       ├── IncompleteEnvelope      the bytes stop before the structure does (truncated)
    │       └── MalformedEnvelope       complete, but not a valid Wattrail envelope
    └── LocalProtocolError
        └── EnvelopeEncodeError         we were asked to encode something the format cannot hold

A verifier counts and quarantines `EnvelopeError`s and never crashes on them; an
`EnvelopeEncodeError` is a bug in the caller. Errors carry `agent_id` / `seq` once the decoder
has read them, so a quarantine row can say whose envelope it was.
"""

from __future__ import annotations

from protocols.errors import LocalProtocolError, RemoteProtocolError


def _where(message: str, agent_id: str | None, seq: int | None) -> str:
    parts = []
    if agent_id is not None:
        parts.append(f"agent {agent_id!r}")
    if seq is not None:
        parts.append(f"seq {seq}")
    return f"{message} [{', '.join(parts)}]" if parts else message


class EnvelopeError(RemoteProtocolError):
    """Base of decode failures. `reason` is a short machine-readable tag for counters."""

    def __init__(
        self, message: str, *, reason: str, agent_id: str | None = None, seq: int | None = None
    ) -> None:
        self.reason = reason
        self.agent_id = agent_id
        self.seq = seq
        super().__init__(_where(message, agent_id, seq))


class IncompleteEnvelope(EnvelopeError):  # noqa: N818 - project vocabulary (DESIGN.md rule 1)
    """The bytes end early: a truncated message. `offset` is where more bytes were needed."""

    def __init__(
        self, message: str, *, offset: int, agent_id: str | None = None, seq: int | None = None
    ) -> None:
        self.offset = offset
        super().__init__(
            f"{message} (input ends at byte {offset}); the message was truncated in transit",
            reason="truncated",
            agent_id=agent_id,
            seq=seq,
        )


class MalformedEnvelope(EnvelopeError):  # noqa: N818 - project vocabulary (DESIGN.md rule 1)
    """Complete bytes that are not a valid envelope; resending the same bytes will not help."""


class EnvelopeEncodeError(LocalProtocolError):
    """A value the envelope format cannot carry (NaN, a negative seq, a 15-byte key id...)."""

    def __init__(self, message: str, *, agent_id: str | None = None, seq: int | None = None) -> None:
        self.agent_id = agent_id
        self.seq = seq
        super().__init__(_where(message, agent_id, seq) + "; fix the caller")
