"""Numba kernels for energy balance, losses, theft indicators, power quality and outages, with NumPy references."""
