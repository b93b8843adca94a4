"""MQTT topic names and the cloud's acknowledgement message (DESIGN.md, "Topics", "Delivery").

    wattrail/v1/<agent-id>/readings   agent -> cloud: signed envelopes (COSE_Sign1 bytes)
    wattrail/v1/<agent-id>/events     agent -> cloud: alarms (outbox full, meter faults)
    wattrail/v1/<agent-id>/status     agent -> cloud: health, retained
    wattrail/v1/<agent-id>/ack        cloud -> agent: "committed up to seq N", retained

The broker's ACL lets an agent write only under its own id (its certificate's CN), so an agent
id must be a single, literal topic level. Ingestors subscribe through a shared subscription so
that several share the load.

The ack is retained: an agent that reconnects learns at once how far the cloud has committed,
even if it was offline when the ack was sent. Its payload is deterministic CBOR
`{1: committed_seq, 2: sha256 of envelope committed_seq}` (all zeros for seq 0). The hash binds
the ack to one chain: a retained ack outlives the chain it was about (an agent whose outbox was
reset, a device re-registered under the same id, a cloud restored from an older backup), and
an agent that trusted the bare number would delete envelopes it had just signed, never sent.
An agent confirms only when the hash matches the envelope it holds at that seq.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import cbor2

from protocols.errors import RemoteProtocolError

PREFIX = "wattrail/v1"
KINDS = ("readings", "events", "status", "ack")
SHARE_GROUP = "ingest"
# Agent ids become topic levels, certificate CNs and file names: keep them boring ASCII.
MAX_AGENT_ID_LEN = 64  # X.509 ub-common-name
_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RESERVED_PREFIX = "wattrail-"  # CNs of cloud services (e.g. wattrail-ingestor), never agents


class MalformedMessage(RemoteProtocolError):  # noqa: N818 - pairs with MalformedResponse
    """A topic or ack from the broker that is not what the contract says: count it, drop it."""


class InvalidAgentId(ValueError):  # noqa: N818 - reads better at the call site
    def __init__(self, agent_id: str, why: str) -> None:
        super().__init__(f"agent id {agent_id!r} refused: {why}")
        self.agent_id = agent_id
        self.why = why


def check_agent_id(agent_id: str) -> str:
    """Return `agent_id` if it can name an agent, else raise `InvalidAgentId` saying why.

    The broker ACL keys on the certificate's CN and agents write under
    `wattrail/v1/<agent-id>/...`, so a separator or wildcard in an id would let an agent (or
    an ACL pattern) reach beyond its own subtree.
    """
    if not isinstance(agent_id, str) or not agent_id:
        raise InvalidAgentId(str(agent_id), "must be a non-empty string")
    if len(agent_id) > MAX_AGENT_ID_LEN:
        raise InvalidAgentId(agent_id, f"longer than {MAX_AGENT_ID_LEN} characters")
    if not _AGENT_ID.match(agent_id):
        raise InvalidAgentId(agent_id, "use A-Z a-z 0-9 . _ - only, starting with a letter or "
                             "digit (no MQTT separators, wildcards, $, blanks)")
    # casefold: `Wattrail-Ingestor` would read as the ingestor to a human auditing the ACL
    if agent_id.casefold().startswith(RESERVED_PREFIX):
        raise InvalidAgentId(agent_id, f"ids starting {RESERVED_PREFIX!r} are reserved")
    return agent_id


def topic(agent_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{PREFIX}/{check_agent_id(agent_id)}/{kind}"


def shared_subscription(kind: str = "readings", group: str = SHARE_GROUP) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"$share/{group}/{PREFIX}/+/{kind}"


def parse_topic(name: str) -> tuple[str, str]:
    """`wattrail/v1/<agent>/<kind>` -> (agent, kind); MalformedMessage for anything else."""
    parts = name.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[3] not in KINDS:
        raise MalformedMessage(f"not a Wattrail topic: {name!r}")
    try:
        return check_agent_id(parts[2]), parts[3]
    except InvalidAgentId as exc:
        raise MalformedMessage(f"bad agent id in topic {name!r}") from exc


class Ack(NamedTuple):
    committed_seq: int
    envelope_hash: bytes  # SHA-256 of the envelope bytes at committed_seq; zeros for seq 0


def encode_ack(committed_seq: int, envelope_hash: bytes) -> bytes:
    if committed_seq < 0:
        raise ValueError(f"committed_seq must be >= 0, got {committed_seq}")
    if len(envelope_hash) != 32:
        raise ValueError(f"envelope_hash must be 32 bytes (SHA-256), got {len(envelope_hash)}")
    return cbor2.dumps({1: committed_seq, 2: bytes(envelope_hash)}, canonical=True)


def decode_ack(payload: bytes) -> Ack:
    """The ack's (committed seq, envelope hash); MalformedMessage if it is not exactly
    `{1: uint, 2: 32-byte string}`. An ack of the old `{1: uint}` form is malformed: without
    the hash it cannot say which chain it is about."""
    try:
        value = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types for junk; all mean "malformed"
        raise MalformedMessage(f"ack is not CBOR: {exc}") from exc
    if not isinstance(value, dict) or set(value) != {1, 2}:
        raise MalformedMessage("ack must be the CBOR map {1: committed_seq, 2: envelope_hash}")
    seq, digest = value[1], value[2]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise MalformedMessage(f"ack committed_seq must be an unsigned integer, got {seq!r}")
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise MalformedMessage("ack envelope_hash must be a 32-byte string")
    if encode_ack(seq, digest) != payload:
        raise MalformedMessage("ack is not deterministically encoded")
    return Ack(seq, digest)
