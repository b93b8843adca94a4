"""The pure part of an analysis run: a `Feed` (feed.py) in, a complete `Report` out.
`stages.run` computes every kernel's output, the suspect score (score.py) and the figures the
results tables show beyond the balance (derived.py); the writers only reshape the Report."""
