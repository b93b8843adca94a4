"""Which strings may name an agent: one rule, defined with the topic names in
`protocols.topics` (an agent id is an MQTT topic level and a certificate CN)."""

from __future__ import annotations

from protocols.topics import MAX_AGENT_ID_LEN as MAX_LEN
from protocols.topics import RESERVED_PREFIX, InvalidAgentId
from protocols.topics import check_agent_id as validate_agent_id

__all__ = ["MAX_LEN", "RESERVED_PREFIX", "InvalidAgentId", "validate_agent_id"]
