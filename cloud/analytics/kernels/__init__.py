"""The Numba kernels: plain arrays in, plain arrays out, no I/O and no knowledge of the Feed.
Each has a NumPy reference (tests/analytics_naive.py) the unit tests compare it against;
`checks` validates their inputs with messages that say the fix, `config` holds the compile
settings, `warmup` compiles them all once before a service answers requests."""
