// Theft suspects: the run's ranking, and per meter the evidence (each indicator 0..1, the raw
// indicators), its transformer's loss, its rank in earlier runs, and its consumption: energy
// per interval from the cumulative import register, with the phase voltages, and the period
// of the strongest evidence shaded.

import { all, get } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";
import { COLOURS, meterBars, timeChart } from "../charts.js";

export async function render(view, ctx, rest, params) {
  if (rest.length) return detail(view, ctx, rest[0]);
  const minScore = Number(params.min_score ?? 0.5);
  const transformer = params.transformer || null;
  const list = await all("suspects", { run_id: ctx.run.run_id, min_score: minScore, transformer_id: transformer }, { maxPages: 5 });
  if (ctx.stale()) return;
  const filter = h("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ min_score: e.target.elements.min_score.value });
    if (transformer) q.set("transformer", transformer);
    ctx.go(`#/suspects?${q}`);
  } }, h("label", {}, "Minimum score ", h("input", { name: "min_score", type: "number", min: 0, max: 1, step: 0.05, value: minScore })),
  h("button", { type: "submit" }, "Filter"),
  transformer ? h("span", {}, ` on transformer ${transformer} `, h("a", { href: "#/suspects" }, "(all)")) : null);
  view.replaceChildren(filter, card(`${list.items.length} suspects in run #${ctx.run.run_id}`,
    list.items.length === 0 ? note("No meter reaches this score.") : table([
      { label: "Rank", class: "num", value: (s) => s.rank },
      { label: "Meter", value: (s) => h("a", { href: `#/suspects/${encodeURIComponent(s.meter_id)}` }, s.meter_id) },
      { label: "Customer", value: (s) => s.customer_id ?? "–" },
      { label: "Transformer", value: (s) => s.transformer_id },
      { label: "Score", class: "num", value: (s) => fmt.num(s.score, 2) },
      { label: "Main evidence", value: (s) => s.strongest_indicator ?? "–" },
      { label: "Estimated theft", class: "num", value: (s) => fmt.kwh(s.estimated_wh) },
      { label: "Share of NTL", class: "num", value: (s) => fmt.kwh(s.allocated_wh) },
      { label: "Evidence period", value: (s) => (s.period ? `${fmt.time(s.period.from)} → ${fmt.time(s.period.to)}` : "–") },
    ], list.items, { onRowClick: (s) => ctx.go(`#/suspects/${encodeURIComponent(s.meter_id)}`), testid: "suspects-table" }),
    list.truncated ? note("Only the first 5,000 suspects are listed; raise the minimum score.", "warn") : null));
}

async function detail(view, ctx, meterId) {
  const s = await get(`suspects/${encodeURIComponent(meterId)}`, { run_id: ctx.run.run_id });
  if (ctx.stale()) return;
  const ev = Object.entries(s.evidence || {}).sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value }));
  const ind = Object.entries(s.indicators || {});
  const tl = s.transformer_loss;
  const chartCard = card("Consumption");
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/suspects" }, "← all suspects")),
    card(`Meter ${s.meter_id}`, h("div", { class: "stats", "data-testid": "suspect-summary" },
      stat("Rank", `${s.rank} of run #${s.run_id}`), stat("Score", fmt.num(s.score, 2)),
      stat("Main evidence", s.strongest_indicator ?? "–"), stat("Estimated theft", fmt.kwh(s.estimated_wh)),
      stat("Share of transformer NTL", fmt.kwh(s.allocated_wh)), stat("Customer", s.customer_id ?? "–"),
      stat("Transformer", s.transformer_id)),
    s.period ? h("p", {}, `Strongest evidence from ${fmt.time(s.period.from)} to ${fmt.time(s.period.to)} (shaded below).`) : null),
    h("div", { class: "two" },
      card("Evidence per indicator (0..1)", ev.length ? meterBars(ev, "evidence-bars") : note("No indicator fired."),
        h("p", { class: "hint" }, "The score is a noisy-OR of these, with fixed weights (docs/analytics.md).")),
      card("Raw indicators", ind.length ? table([{ label: "Indicator", value: (r) => r[0] },
        { label: "Value", class: "num", value: (r) => (typeof r[1] === "number" ? fmt.num(r[1], 3) : JSON.stringify(r[1])) }], ind,
      { testid: "indicators-table" }) : note("None recorded."))),
    chartCard,
    h("div", { class: "two" },
      card(`Transformer ${s.transformer_id}`, tl ? h("dl", { class: "kv" },
        h("dt", {}, "Loss"), h("dd", {}, `${fmt.kwh(tl.loss_wh)} (${fmt.pct(tl.loss_pct)})`),
        h("dt", {}, "Non-technical"), h("dd", {}, `${fmt.kwh(tl.ntl_wh)} ± ${fmt.kwh(tl.ntl_sigma_wh)}`),
        h("dt", {}, "Completeness"), h("dd", {}, fmt.share(tl.completeness))) : note("No loss figures in this run."),
      h("a", { href: `#/loss?level=transformer&id=${encodeURIComponent(s.transformer_id)}` }, "Loss series →")),
      card("Earlier runs", table([{ label: "Run", value: (r) => `#${r.run_id}` },
        { label: "Period", value: (r) => `${fmt.time(r.period_start).slice(0, 10)} → ${fmt.time(r.period_end).slice(0, 10)}` },
        { label: "Rank", class: "num", value: (r) => r.rank }, { label: "Score", class: "num", value: (r) => fmt.num(r.score, 2) }],
      s.history || []))),
  );
  await consumption(chartCard, ctx, s);
}

async function consumption(chartCard, ctx, s) {
  const { period_start: start, period_end: end } = ctx.run;
  // raw readings (31-day cap per request): interval energy = difference of the cumulative
  // register, so a tampered meter's flat register and its voltages show side by side
  const readings = await all(`meters/${encodeURIComponent(s.meter_id)}/readings`, { start, end: new Date(Date.parse(end) + 1000).toISOString() }, { maxPages: 10 });
  if (ctx.stale()) return;
  const rows = readings.items.filter((r) => r.import_wh !== null || r.v_l1_v !== null);
  if (rows.length < 2) { chartCard.append(note("Not enough readings in the run's period to draw consumption.")); return; }
  const x = [], energy = [], v1 = [], v2 = [], v3 = [];
  let prev = null;
  for (const r of rows) {
    x.push(Date.parse(r.ts) / 1000);
    const d = prev !== null && r.import_wh !== null && prev.import_wh !== null ? r.import_wh - prev.import_wh : null;
    energy.push(d === null || d < 0 ? null : d);
    v1.push(r.v_l1_v); v2.push(r.v_l2_v); v3.push(r.v_l3_v);
    if (r.import_wh !== null) prev = r;
  }
  const flags = new Set(rows.flatMap((r) => r.status_flags));
  chartCard.append(h("p", {}, `${rows.length} readings` + (readings.truncated ? " (first pages only)" : "")
    + (flags.size ? `; meter status flags seen: ${[...flags].join(", ")}` : "; no meter status flags.")));
  const series = [{ label: "energy per interval (Wh)", values: energy, colour: COLOURS.energy, fill: true, digits: 0 }];
  [v1, v2, v3].forEach((v, i) => {
    if (v.some((y) => y !== null)) series.push({ label: `V L${i + 1}`, values: v, colour: COLOURS.voltage[i], scale: "y2" });
  });
  timeChart(chartCard, {
    title: "Imported energy per interval and phase voltages", testid: "consumption-chart", x, series,
    yLabel: "Wh", y2Label: "V",
    shade: s.period ? { from: Date.parse(s.period.from) / 1000, to: Date.parse(s.period.to) / 1000 } : null,
  });
}
