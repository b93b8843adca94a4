// Regional consumption: every region's net consumption, peak and next-day forecast; for one
// region, energy per day of the period with the forecast day, and the mean daily profile
// against the forecast profile (Holt-Winters, docs/analytics.md) with its hold-out error.

import { all, get } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";
import { COLOURS, barChart, timeChart } from "../charts.js";

export async function render(view, ctx, _rest, params) {
  const runId = ctx.run.run_id;
  const list = await all("regional-summaries", { run_id: runId });
  if (ctx.stale()) return;
  const id = params.region || list.items[0]?.region_id;
  const summary = card(`Regions of run #${runId}`, list.items.length === 0 ? note("No regional summary in this run.") : table([
    { label: "Region", value: (r) => r.region_id },
    { label: "Consumption", class: "num", value: (r) => fmt.kwh(r.energy_wh) },
    { label: "Peak interval", class: "num", value: (r) => `${fmt.kwh(r.peak_interval_wh)} at ${fmt.time(r.peak_at)}` },
    { label: "Forecast next day", class: "num", value: (r) => fmt.kwh(r.forecast_next_day_wh) },
    { label: "Hold-out MAPE", class: "num", value: (r) => fmt.pct(r.holdout_mape_pct) },
  ], list.items, { onRowClick: (r) => ctx.go(`#/regional?region=${encodeURIComponent(r.region_id)}`), testid: "regions-table" }));
  view.replaceChildren(summary);
  if (!id) return;
  for (const tr of summary.querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.firstChild.textContent === id);
  const r = await get(`regional-summaries/${encodeURIComponent(id)}`, { run_id: runId });
  if (ctx.stale()) return;
  const detail = card(`Region ${r.region_id}`, h("div", { class: "stats" },
    stat("Consumption", fmt.kwh(r.energy_wh)), stat("Peak interval", fmt.kwh(r.peak_interval_wh)),
    stat("Forecast next day", fmt.kwh(r.forecast_next_day_wh)),
    stat("Hold-out error", r.holdout_mae_wh === null ? "needs 3 days" : `MAE ${fmt.num(r.holdout_mae_wh / 1000, 2)} kWh per interval, MAPE ${fmt.pct(r.holdout_mape_pct)}`)));
  view.append(detail);
  const day0 = Date.parse(r.period_start);
  const labels = r.daily_wh.map((_, i) => new Date(day0 + i * 86400e3).toISOString().slice(5, 10));
  const hasForecast = r.forecast_next_day_wh !== null;
  if (hasForecast) labels.push(`${new Date(day0 + r.daily_wh.length * 86400e3).toISOString().slice(5, 10)} (forecast)`);
  barChart(detail, { title: "Energy per UTC day (kWh) and the forecast next day", testid: "daily-chart", labels, yLabel: "kWh",
    series: [
      { label: "measured", values: [...r.daily_wh.map((v) => (v === null ? null : v / 1000)), ...(hasForecast ? [null] : [])], colour: COLOURS.bar },
      ...(hasForecast ? [{ label: "forecast", values: [...r.daily_wh.map(() => null), r.forecast_next_day_wh / 1000], colour: COLOURS.forecast }] : []),
    ] });
  // both profiles on one day's clock: seconds since the day's start, shown as UTC times of day 1
  const profileX = r.profile.map((p) => Date.parse(p.at) / 1000);
  if (r.forecast.length === r.profile.length && profileX.length) {
    timeChart(detail, { title: `Mean daily profile vs the forecast day, per ${r.interval_s / 60} min (kWh)`, testid: "profile-chart",
      x: profileX, yLabel: "kWh", series: [
        { label: "mean profile", values: r.profile.map((p) => (p.energy_wh === null ? null : p.energy_wh / 1000)), colour: COLOURS.profile, digits: 2 },
        { label: `forecast ${r.forecast[0].at.slice(0, 10)}`, values: r.forecast.map((p) => (p.energy_wh === null ? null : p.energy_wh / 1000)), colour: COLOURS.forecast, dash: [6, 3], digits: 2 },
      ] });
  } else if (profileX.length) {
    timeChart(detail, { title: "Mean daily profile (kWh); no forecast: the period is shorter than 2 days", testid: "profile-chart",
      x: profileX, yLabel: "kWh", series: [
        { label: "mean profile", values: r.profile.map((p) => (p.energy_wh === null ? null : p.energy_wh / 1000)), colour: COLOURS.profile, digits: 2 }] });
  }
}
