// Power quality and outages of the run: overloaded transformers (peak loading / rating, with a
// bar chart), customers' voltage outside 230 V ± 10 % (the rural low-voltage problem), phase
// imbalance, and the outages localised to a transformer or feeder.

import { all } from "../api.js";
import { card, fmt, h, note, table } from "../dom.js";
import { COLOURS, barChart } from "../charts.js";

const KINDS = {
  overload: { title: "Transformer overload", value: (e) => `${fmt.num(100 * e.value, 0)} % of rating` },
  voltage: { title: "Voltage outside 230 V ± 10 %", value: (e) => `${fmt.share(e.value)} of instants` },
  imbalance: { title: "Phase current imbalance", value: (e) => fmt.num(e.value, 2) },
};

function details(d) {
  const parts = Object.entries(d || {}).map(([k, v]) => `${k} ${typeof v === "number" ? fmt.num(v, 1) : v}`);
  return parts.join(", ") || "–";
}

export async function render(view, ctx) {
  const runId = ctx.run.run_id;
  const [events, outages] = await Promise.all([
    all("power-quality", { run_id: runId }, { maxPages: 5 }),
    all("outages", { run_id: runId }, { maxPages: 5 }),
  ]);
  if (ctx.stale()) return;
  const byKind = Object.fromEntries(Object.keys(KINDS).map((k) => [k, events.items.filter((e) => e.kind === k)]));
  const overload = card("Transformer overload");
  view.replaceChildren(overload);
  if (byKind.overload.length) {
    const top = byKind.overload.slice(0, 30);
    barChart(overload, { title: "Peak loading, % of rating (100 % = rated kVA)", testid: "overload-chart",
      labels: top.map((e) => e.entity_id), yLabel: "% of rating",
      series: [{ label: "peak loading %", values: top.map((e) => 100 * e.value), colour: COLOURS.ntl, digits: 0 }] });
  }
  overload.append(kindTable("overload", byKind.overload));
  for (const k of ["voltage", "imbalance"]) view.append(card(KINDS[k].title, kindTable(k, byKind[k])));
  view.append(card(`Outages (${outages.items.length})`, outages.items.length === 0 ? note("No outage in this run.") : table([
    { label: "Level", value: (o) => o.level },
    { label: "Where", value: (o) => (o.level === "transformer"
      ? h("a", { href: `#/loss?level=transformer&id=${encodeURIComponent(o.entity_id)}` }, o.entity_id) : o.entity_id) },
    { label: "Region", value: (o) => o.region_id ?? "–" },
    { label: "From", value: (o) => fmt.time(o.started_at) },
    { label: "To", value: (o) => (o.ended_at ? fmt.time(o.ended_at) : "still out at the end of the period") },
    { label: "Duration", class: "num", value: (o) => fmt.duration(o.duration_s) },
  ], outages.items, { testid: "outages-table" })));
}

function kindTable(kind, rows) {
  if (!rows.length) return note(`No ${kind} problem in this run.`);
  return table([
    { label: kind === "voltage" ? "Meter" : "Transformer", value: (e) => e.entity_id },
    { label: "Transformer", value: (e) => e.transformer_id ?? "–" },
    { label: "Value", class: "num", value: KINDS[kind].value },
    { label: "Intervals over", class: "num", value: (e) => e.intervals ?? "–" },
    { label: "Longest from", value: (e) => fmt.time(e.started_at) },
    { label: "to", value: (e) => fmt.time(e.ended_at) },
    { label: "Details", value: (e) => details(e.details) },
  ], rows, { testid: `pq-${kind}-table` });
}
