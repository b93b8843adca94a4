"""The analytics: readings and topology in, loss reports, suspects, power quality, outages and
regional forecasts out (docs/analytics.md). Its rooms, in the order a run goes through them:

    data/        the database side: `fetch` builds a Feed from TimescaleDB, `rows` reshapes a
                 Report into the results tables' rows (pure), `write` stores them in one transaction
    pipeline/    pure: the Feed (the seam between storage and kernels), `stages.run` over every
                 kernel, the suspect `score`, the `derived` figures; a Feed in, a complete Report out
    kernels/     the Numba kernels, each with a NumPy reference the tests compare it against,
                 their input `checks`, compile `config` and `warmup`
    evaluation/  scoring against ground truth; nothing above imports it
    batch.py     one batch: fetch -> pipeline -> write, timed (what `wattrail analyze` runs)

Imports go down the list only: data and pipeline may use kernels, kernels use neither.
"""
