"""Simulated meters as real Modbus servers on a simulated low-voltage grid.

Modules, one job each:
    grid, grid_file   regions -> feeders -> transformers -> customers; the JSON grid file
    profiles          stateless load and PV profiles per customer class (counter-based noise)
    physics           currents, voltage drops, technical losses (vectorised, minutes x meters)
    theft, truth      false-data-injection attacks and physical tampers; the ground-truth file
    simulation        energy registers advanced minute by minute (true and reported)
    meters            `protocols.reading.Reading` per meter at a simulated instant
    faults, clock     wire/register fault injection; the accelerated or manual clock
    data_faults       meter data faults with truth: stuck registers, spikes, missing days,
                      agent clock steps (off unless given)
    store, server     the datastore pymodbus reads (encoded by `protocols`); TCP and RTU servers
    rtu               socat pty pairs for RS-485 lines
    serve             `run(...)`: serve a whole grid from one process (what `wattrail sim` calls)
"""
