// Revenue: quantity, price, fee and loss side by side for one billing period (a local month),
// per region, feeder and transformer: energy in, billed, technical loss, NTL ± 1σ, the share
// resting on VEE estimates, amount billed and revenue at risk from NTL and from estimates;
// large and special customers; the report's notes. The losses come from the analytics run
// covering the period (the report picks it; the header's run picker does not apply here).
// Missing is shown as "–", never as 0.

import { ApiError, all, get } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";

export const needsRun = false; // billing runs stand without an analytics run
export const STATUS = { valid: "ok", estimated: "warn", failed: "bad" }; // VEE status -> badge colour
const LEVELS = ["region", "feeder", "transformer"];
const kwh = (x) => (x === null || x === undefined ? "–" : `${fmt.num(x, 1)} kWh`);
// No input reading: the analytics still write a technical loss and an NTL of 0 for such an
// entity (and the report a revenue at risk of 0); a loss nobody measured is shown as missing.
const unmeasured = (r) => r.energy_in_kwh === null;
const when = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }) : "–");

export async function render(view, ctx, _rest, params) {
  const runs = await all("billing/runs", {}, { maxPages: 2, limit: 500 });
  if (ctx.stale()) return;
  const periods = [...new Set(runs.items.map((r) => r.period))].sort().reverse();
  if (!periods.length) {
    view.replaceChildren(note("No billing run yet: the report appears after `wattrail billing determinants --period YYYY-MM` has run."));
    return;
  }
  const period = periods.includes(params.period) ? params.period : periods[0];
  const picker = h("div", { class: "controls" },
    h("label", {}, "Billing period ", h("select", { id: "revenue-period", "aria-label": "billing period",
      onchange: (e) => ctx.go(`#/revenue?period=${e.target.value}`) },
    periods.map((p) => h("option", { value: p, selected: p === period }, p)))));
  let rep;
  try {
    rep = await get("revenue", { period });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    view.replaceChildren(picker, note(err.problem?.detail || err.message, "warn"));
    return;
  }
  if (ctx.stale()) return;
  const cur = rep.currency ? ` (${rep.currency})` : "";
  const b = rep.billing_run;
  const head = card(`Revenue ${rep.period}`, h("div", { class: "stats", "data-testid": "revenue-summary" },
    stat("Billing run", `#${b.run_id}, ${b.customers} customers, ${when(b.created_at)}`),
    stat("VEE run", `#${b.vee_run_id}`),
    stat("Analytics run", rep.analysis_run_id === null ? "none covers the period" : `#${rep.analysis_run_id}`),
    stat("Currency", rep.currency ?? "several: amounts summed per entity only where one is used")),
  rep.notes.length ? h("ul", { class: "run-notes", "data-testid": "revenue-notes" }, rep.notes.map((n) => h("li", {}, n))) : null);
  const cards = LEVELS.map((level) => {
    const rows = rep.rows.filter((r) => r.level === level);
    return card(`Per ${level}`, rows.length ? table([
      { label: level[0].toUpperCase() + level.slice(1), value: (r) => r.entity_id },
      { label: "Customers", class: "num", value: (r) => r.customers },
      { label: "Energy in", class: "num", value: (r) => kwh(r.energy_in_kwh) },
      { label: "Billed", class: "num", value: (r) => kwh(r.billed_kwh) },
      { label: "Technical", class: "num", value: (r) => (unmeasured(r) ? "–" : kwh(r.technical_kwh)) },
      { label: "NTL ± 1σ", class: "num", value: (r) => (unmeasured(r) || r.ntl_kwh === null ? "–" : `${kwh(r.ntl_kwh)} ± ${fmt.num(r.ntl_sigma_kwh, 1)}`) },
      { label: "Estimated", class: "num", value: (r) => fmt.share(r.estimated_share) },
      { label: `Amount billed${cur}`, class: "num", value: (r) => fmt.money(r.amount_billed) + (r.not_billable ? ` (+${r.not_billable} not billable)` : "") },
      { label: "At risk: NTL", class: "num", value: (r) => (unmeasured(r) ? "–" : fmt.money(r.revenue_at_risk_ntl)) },
      { label: "At risk: estimates", class: "num", value: (r) => fmt.money(r.revenue_at_risk_estimates) },
      { label: "Completeness", class: "num", value: (r) => fmt.share(r.completeness) + (r.low_confidence ? " ⚠" : "") },
    ], rows, { testid: `revenue-${level}` }) : note(`No ${level} in this billing run.`));
  });
  const special = card("Large and special customers", rep.special.length ? table([
    { label: "Customer", value: (c) => c.customer_id },
    { label: "Meter", value: (c) => h("a", { href: `#/vee/${encodeURIComponent(c.meter_id)}` }, c.meter_id) },
    { label: "Transformer", value: (c) => c.transformer_id },
    { label: "Class", value: (c) => c.class ?? "–" },
    { label: "Tariffs", value: (c) => c.tariffs.join(", ") },
    { label: "Billed", class: "num", value: (c) => kwh(c.billed_kwh) },
    { label: "Max kW", class: "num", value: (c) => fmt.num(c.max_kw, 1) },
    { label: "Contract kVA", class: "num", value: (c) => fmt.num(c.contract_kva, 0) },
    { label: "Estimated", class: "num", value: (c) => fmt.share(c.estimated_share) },
    { label: "Amount", class: "num", value: (c) => (c.amount === null ? "not billable" : `${fmt.money(c.amount)} ${c.currency}`) },
    { label: "VEE", value: (c) => h("span", { class: `badge ${STATUS[c.vee_status] || ""}` }, c.vee_status) },
  ], rep.special, { testid: "special-table" }) : note("No large or special customer in this billing run."),
  h("p", { class: "hint" }, "Flagged special in the archive, or of class industrial or special."));
  view.replaceChildren(picker, head, ...cards, special,
    h("p", { class: "hint" }, "Energy in, technical and NTL are the analytics' energy balance; billed is the post-VEE import of the customers. "
      + "Revenue at risk: max(NTL, 0) × the entity's effective price, and estimated kWh × price (docs/mdm.md)."));
}
