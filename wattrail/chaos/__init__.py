"""The reliability campaign: stream known signed envelopes through the real pipeline (Publisher +
Outbox agents -> TLS Mosquitto -> `wattrail ingest` processes -> TimescaleDB on a private
services instance), inject one fault, then compare the database with what was signed
(docs/campaign.md). Its rooms:

    services.py         the private TimescaleDB + Mosquitto, the ingestors, the waits
    fleet.py            deterministic signed chains, the scales, fleets of real publishers
    results.py          the database checked against what was signed, the results table
    delivery.py         scenarios: broker, agent, ingestor and database kills, a partition
    edge_faults.py      scenarios: full outbox, full database disk, clock jumps
    bad_envelopes.py    scenario: bad messages of every kind mixed into valid streams
    registry.py         the scenarios by name
    crashing_ingest.py  `python -m wattrail.chaos.crashing_ingest`: `wattrail ingest` that dies
                        at a chosen point (the shipped ingestor has no crash switch)
    proxy.py            the cuttable TCP proxy (partition; the tests use it too)

Used by `wattrail chaos run` (wattrail/commands/chaos.py), tests/chaos/ and tests/security/.
"""
