"""The customer archive's health: completeness checks and connectivity from the data.

    completeness.py   records + reading summaries -> findings with evidence and a fix (pure)
    connectivity.py   voltages and energies -> which transformer / phase a meter hangs on (pure)
    store.py          the database side: summaries by SQL, runs, suspicions, accepted corrections
"""
