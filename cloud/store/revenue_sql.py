"""The queries of the revenue report and the tariff execution check (cloud/mdm/revenue.py,
cloud/mdm/tariff_check.py): billing determinants beside the analytics' energy balance."""

from __future__ import annotations

# a billing run's determinants per customer with where the customer hangs in the grid
DETERMINANTS_IN_GRID = (
    "SELECT d.customer_id, d.meter_id, d.tariff_id, d.total_kwh, d.export_kwh,"
    " d.estimated_share, d.amount, d.missing, d.intervals, d.vee_status, d.max_kw, d.currency,"
    " c.transformer_id, t.feeder_id, f.region_id, c.is_special, c.class, c.contract_kva,"
    " c.has_pv, d.kwh_by_period, d.tariff_from, d.demand_window_s"
    " FROM billing_determinants d JOIN customers c USING (customer_id)"
    " JOIN transformers t ON t.transformer_id = c.transformer_id"
    " JOIN feeders f ON f.feeder_id = t.feeder_id"
    " WHERE d.run_id = %(run)s ORDER BY d.customer_id, d.first_day")
BILLING_RUN_PERIOD = (
    "SELECT b.run_id, b.period, v.period_start, v.period_end, v.step_s FROM billing_runs b"
    " JOIN vee_runs v ON v.run_id = b.vee_run_id WHERE b.run_id = %(run)s")
LATEST_BILLING_RUN_OF = (
    "SELECT run_id FROM billing_runs WHERE period = %(period)s ORDER BY run_id DESC LIMIT 1")
# the newest analysis run covering [start, end) to within one step at either end
ANALYSIS_RUN_COVERING = (
    "SELECT run_id, period_start, period_end FROM analysis_runs"
    " WHERE period_start <= %(start)s + make_interval(secs => %(step)s)"
    " AND period_end >= %(end)s - make_interval(secs => 2 * %(step)s)"
    " ORDER BY run_id DESC LIMIT 1")
LOSS_OF_RUN = (
    "SELECT level, entity_id, energy_in_wh, energy_out_wh, technical_wh, ntl_wh, ntl_sigma_wh, completeness,"
    " low_confidence FROM analysis_loss WHERE run_id = %(run)s")
TARIFF_DOCS = "SELECT tariff_id, valid_from, doc FROM tariffs"
