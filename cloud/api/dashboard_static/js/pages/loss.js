// Loss series: pick a level and an entity (worst NTL first); its interval series from the run,
// technical loss vs non-technical loss (NTL, with its 1-sigma band) in kWh, and loss % on the
// right axis.

import { all } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";
import { COLOURS, timeChart } from "../charts.js";

const LEVELS = ["transformer", "feeder", "region"];

export async function render(view, ctx, _rest, params) {
  const level = LEVELS.includes(params.level) ? params.level : "transformer";
  const resolution = ["step", "hour", "day"].includes(params.resolution) ? params.resolution : "hour";
  const runId = ctx.run.run_id;
  const list = await all("loss", { level, run_id: runId, sort: "worst" });
  if (ctx.stale()) return;
  const id = params.id || list.items[0]?.entity_id;
  const here = (o) => `#/loss?${new URLSearchParams({ level, resolution, ...(id ? { id } : {}), ...o })}`;
  const controls = h("div", { class: "controls" },
    h("label", {}, "Level ", h("select", { id: "loss-level", onchange: (e) => ctx.go(`#/loss?level=${e.target.value}&resolution=${resolution}`) },
      LEVELS.map((l) => h("option", { value: l, selected: l === level }, l)))),
    h("label", {}, "Resolution ", h("select", { id: "loss-resolution", onchange: (e) => ctx.go(here({ resolution: e.target.value })) },
      ["step", "hour", "day"].map((r) => h("option", { value: r, selected: r === resolution }, r === "step" ? `${ctx.run.step_s / 60} min` : r)))));
  const entities = table([
    { label: level[0].toUpperCase() + level.slice(1), value: (r) => r.entity_id },
    { label: "Energy in", class: "num", value: (r) => fmt.kwh(r.energy_in_wh) },
    { label: "Loss", class: "num", value: (r) => fmt.pct(r.loss_pct) },
    { label: "Technical", class: "num", value: (r) => fmt.kwh(r.technical_wh) },
    { label: "NTL ± 1σ", class: "num", value: (r) => `${fmt.kwh(r.ntl_wh)} ± ${fmt.num(r.ntl_sigma_wh === null ? null : r.ntl_sigma_wh / 1000, 1)}` },
    { label: "Revenue at risk", class: "num", value: (r) => fmt.money(r.revenue_at_risk) },
    { label: "Completeness", class: "num", value: (r) => fmt.share(r.completeness) + (r.low_confidence ? " ⚠" : "") },
  ], list.items, { onRowClick: (r) => ctx.go(here({ id: r.entity_id })), testid: "loss-table" });
  const chartCard = card(id ? `${level} ${id}` : "No entity");
  view.replaceChildren(controls, chartCard, card(`All ${level}s of run #${runId}, worst NTL first`, entities,
    list.truncated ? note("Only the first pages are shown.", "warn") : null));
  if (!id) { chartCard.append(note(`Run #${runId} has no ${level} figures.`)); return; }
  for (const tr of entities.querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.firstChild.textContent === id);

  const total = list.items.find((r) => r.entity_id === id);
  if (total) {
    chartCard.append(h("div", { class: "stats" },
      stat("Loss", `${fmt.kwh(total.loss_wh)} (${fmt.pct(total.loss_pct)})`), stat("Technical", fmt.kwh(total.technical_wh)),
      stat("Non-technical", fmt.kwh(total.ntl_wh)), stat("Revenue at risk", fmt.money(total.revenue_at_risk))));
  }
  const series = await all(`loss/${level}/${encodeURIComponent(id)}/intervals`, { run_id: runId, resolution });
  if (ctx.stale()) return;
  const rows = series.items;
  if (!rows.length) { chartCard.append(note("No interval series for it in this run.")); return; }
  const kwh = (k) => rows.map((r) => (r[k] === null ? null : r[k] / 1000));
  const band = (sign) => rows.map((r) => (r.ntl_wh === null || r.ntl_sigma_wh === null ? null : (r.ntl_wh + sign * r.ntl_sigma_wh) / 1000));
  timeChart(chartCard, {
    title: `Technical vs non-technical loss per ${resolution === "step" ? `${ctx.run.step_s / 60} min` : resolution} (kWh)`,
    testid: "loss-chart",
    x: rows.map((r) => Date.parse(r.interval_start) / 1000),
    yLabel: "kWh", y2Label: "loss %",
    series: [
      { label: "technical", values: kwh("technical_wh"), colour: COLOURS.technical, fill: true, digits: 2 },
      { label: "NTL", values: kwh("ntl_wh"), colour: COLOURS.ntl, fill: true, digits: 2 },
      { label: "NTL + 1σ", values: band(1), colour: COLOURS.sigma, dash: [4, 4], digits: 2 },
      { label: "NTL − 1σ", values: band(-1), colour: COLOURS.sigma, dash: [4, 4], digits: 2 },
      { label: "loss %", values: rows.map((r) => r.loss_pct), colour: COLOURS.loss, scale: "y2" },
    ],
  });
}
