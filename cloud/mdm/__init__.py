"""Meter data management: local calendars, tariffs, billing determinants and VEE (validation,
estimation and editing) on interval energy. The cores here are sans-IO (NumPy in, NumPy out);
their SQL lives in cloud/store."""
