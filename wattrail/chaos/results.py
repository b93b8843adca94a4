"""Checking the database against what was signed: `Result` per scenario (expected, stored,
lost, duplicated, quarantined, gaps) and the table `wattrail chaos run` prints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import psycopg

from cloud.store import envelopes_sql, quarantine_sql, readings_sql


# -- checking the database against what was signed ------------------------------------------
@dataclass
class Result:
    scenario: str
    expected: int = 0  # readings signed (and that must be stored)
    stored: int = 0  # distinct expected (meter, ts) rows found
    lost: int = 0
    duplicated: int = 0
    quarantined: int = 0
    gaps: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    expect_quarantine: int = 0  # bad messages the scenario sent on purpose

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.gaps == 0
                and self.quarantined == self.expect_quarantine
                and not any("MISMATCH" in n for n in self.notes))


def check(dsn: str, signed: dict[str, list[bytes]], readings_per_env: int, r: Result) -> Result:
    """Fill `r` from the database: every signed envelope stored with its exact bytes, every
    reading once, no gap in any agent's seq, nothing quarantined."""
    expected_sha = {hashlib.sha256(e).digest() for chain in signed.values() for e in chain}
    with psycopg.connect(dsn) as c:
        stored_sha = {bytes(s) for (s,) in c.execute(envelopes_sql.ALL_SHA256)}
        total, distinct = c.execute(  # type: ignore[misc]
            readings_sql.COUNT_AND_DISTINCT_KEYS).fetchone()
        gaps = c.execute(envelopes_sql.MISSING).fetchone()
        q = c.execute(quarantine_sql.ARRIVALS).fetchone()
        aside = c.execute("SELECT count(*) FROM reading_conflicts").fetchone()
    missing_env = len(expected_sha - stored_sha)
    kept_aside = int(aside[0]) if aside else 0
    r.expected = len(expected_sha) * readings_per_env
    # a reading whose (meter, ts) was taken is kept in reading_conflicts: stored, not lost
    r.stored = min(int(distinct) + kept_aside, r.expected)
    if kept_aside:
        r.notes.append(f"{kept_aside} readings kept in reading_conflicts (their instant was taken)")
        r.figures["reading_conflicts"] = kept_aside
    r.lost = r.expected - r.stored
    r.duplicated = int(total) - int(distinct)
    r.gaps = int(gaps[0]) if gaps else 0
    r.quarantined = int(q[0]) if q else 0
    if stored_sha - expected_sha:
        r.notes.append(f"{len(stored_sha - expected_sha)} stored envelopes were never signed")
        r.lost += len(stored_sha - expected_sha) * readings_per_env  # counts as wrong, loudly
    if missing_env:
        r.notes.append(f"{missing_env} signed envelopes missing")
    return r


def count_envelopes(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute(envelopes_sql.COUNT).fetchone()
    return int(row[0]) if row else 0


def table(results: list[Result]) -> str:
    head = ("scenario", "expected", "stored", "lost", "duplicated", "quarantined", "gaps", "s")
    rows = [head] + [(r.scenario, str(r.expected), str(r.stored), str(r.lost), str(r.duplicated),
                      str(r.quarantined), str(r.gaps), f"{r.seconds:.1f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        lines.append(f"- {r.scenario}: " + "; ".join(r.notes))
    return "\n".join(lines)
