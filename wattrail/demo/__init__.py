"""`make demo` / `wattrail demo`: the whole platform on a simulated grid, on loopback.

    services (TimescaleDB, TLS Mosquitto)        scripts/services, state in ~/.cache/wattrail/demo
    grid + thieves + ground truth                firmware_sim, in this process
    one edge agent per gateway (transformer)     edge.Agent, in this process, on the simulated clock
    two ingestors + transparency log             `wattrail ingest` subprocesses
    topology, agents' keys, results              TimescaleDB database `wattrail_demo`

The simulator and the agents share one simulated clock that runs in lock step: it moves to
the next 15-minute poll instant only after every agent has finished and sealed its cycle for
the current one, so the demo runs as fast as the machine allows and the same seed gives the
same readings, stored rows and findings whatever the load (`--speed` only caps the pace).
At the end the demo prints the audit status and the loss, theft and outage findings.
"""


# The package: `setup` (options, services, a fresh database), `run` (the streaming run and its
# entry point, `python -m wattrail.demo`), `report` (the live progress and the final tables).
