"""Numba kernels for energy balance, losses, theft indicators, power quality and outages,
each with a plain NumPy reference the tests compare it against."""
