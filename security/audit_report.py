"""What an audit of a bundle finds (security/audit_bundle.py): findings, notes and counts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    seq: int | None = None


@dataclass
class AuditReport:
    agent_id: str = ""
    envelopes: int = 0
    verified: int = 0
    proofs_checked: int = 0
    heads_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings
