"""Physical plausibility ranges in SI units, shared by every map.

Wide on purpose: they catch words decoded with the wrong type, order or scale (a voltage of
1e-41 V or 1.5e8 V), not abnormal-but-real grid conditions (0 V on a lost phase, 300 V
overvoltage), which analytics must see. Maps narrow a range only where their register format
cannot reach the shared bound (EM24 energy).
"""

from __future__ import annotations

VOLTS = (0.0, 600.0)  # line-to-neutral; 0 V is a lost phase, not an error
AMPS = (0.0, 10_000.0)  # RMS currents are never negative; 10 kA covers CT-connected meters
WATTS = (-5.0e7, 5.0e7)  # ±50 MW: a primary substation, beyond any single metered point
VARS = WATTS
POWER_FACTOR = (-1.0, 1.0)
HERTZ = (40.0, 70.0)  # a live meter is powered by the line it measures; 0 Hz is not physical
ENERGY_WH = (0.0, 1.0e13)  # 10 TWh; cumulative registers never go negative
