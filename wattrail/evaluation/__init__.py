"""Evaluations that wire a data source to the analytics (docs/analytics.md).

    simulator.py   the simulator's grid and truth, in memory: `python -m wattrail.evaluation.simulator`
    scenarios.py   scenarios of real households with injected thefts and balance meters
    realdata.py    the ranking and NTL on those scenarios against two baselines
                   (`python bench/eval_realdata.py`)
    vee_faults.py  faults of known truth injected into real households' intervals
    vee.py         the VEE rules and estimators scored on them (`python bench/eval_vee.py`)
    vee_sim.py     the VEE rules on the simulator's meter data faults through the platform's
                   own way in, with the edge played over it (`python bench/eval_vee_sim.py`);
                   vee_sim_store.py its database side

They live in `wattrail/` because they join `firmware_sim` or the real data to `cloud.analytics`,
which never imports either (the VEE evaluation likewise joins the real data to `cloud.mdm`).
"""
