"""Helpers for tests that run a real edge agent."""

from __future__ import annotations

import time

from edge.config import AgentConfig
from security.keyring import KeyCertificate, Keyring
from security.keys import key_id, load_private_key, raw_public_key


def keyring_for(cfg: AgentConfig) -> Keyring:
    """A keyring trusting `cfg`'s signing key for a day either side of now."""
    key = load_private_key(cfg.signing_key)
    now = int(time.time() * 1000)
    return Keyring([KeyCertificate(cfg.agent_id, key_id(key), raw_public_key(key),
                                   now - 86_400_000, now + 86_400_000)])
