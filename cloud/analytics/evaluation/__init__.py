"""Scoring the analytics against ground truth (docs/analytics.md, "Evaluation").

    metrics.py      ROC-AUC, MAP@N, precision@k, NTL errors: pure functions on arrays
    stored_run.py   a stored analysis run against a truth file (`wattrail evaluate`)

The detectors never import this package: evaluation reads their output, never the reverse.
"""
