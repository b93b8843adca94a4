"""Simulated meters as real Modbus servers on a simulated low-voltage grid.

Will own: the grid (regions, feeders, transformers, customers), load profiles, technical
losses, theft and tamper scenarios with ground truth, fault injection and the accelerated clock.
"""
