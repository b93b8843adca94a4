// Meter VEE: one meter's history in a VEE run. Its local days (status coloured: valid,
// estimated, failed; the rules that flagged an interval; counts), and for a chosen day every
// version of the intervals VEE or a person touched: raw beside post-VEE, the rules, the
// estimation method, which version is in force, and who edited it and why. Interval times
// are the region's local wall clock (the zone the days are cut in), with their UTC offset.
// An interval not listed is valid as read (post-VEE = raw). Missing is shown as "missing".

import { ApiError, all, get } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";
import { STATUS } from "./revenue.js";

export const needsRun = false; // VEE runs stand without an analytics run
const DAY_MS = 86400000;
const energy = (x) => (x === null || x === undefined ? "missing" : `${fmt.num(x, 3)} kWh`);
const isoDay = (day, plus) => new Date(Date.parse(`${day}T00:00:00Z`) + plus * DAY_MS).toISOString();
const edited = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }) : "–");

/** "2026-03-02T00:45:00+01:00" -> "00:45 +01:00" (the zone's wall clock, as the API gives it). */
function wallClock(v) {
  const iso = v.bucket_local || v.bucket;
  const m = /T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.exec(iso);
  return m ? `${m[1]} ${m[2] === "Z" ? "UTC" : m[2]}` : iso;
}
const localDay = (v) => (v.bucket_local || v.bucket).slice(0, 10);

export async function render(view, ctx, rest, params) {
  const meter = rest[0] || "";
  const runs = (await get("vee/runs", { limit: 100 })).items;
  if (ctx.stale()) return;
  const run = runs.find((r) => String(r.run_id) === params.run) || runs[0] || null;
  const form = h("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    const id = e.target.elements.meter.value.trim();
    if (id) ctx.go(`#/vee/${encodeURIComponent(id)}?run=${e.target.elements.run.value}`);
  } },
  h("label", {}, "Meter ", h("input", { name: "meter", id: "vee-meter", value: meter, placeholder: "MTR-000001", required: true, spellcheck: "false" })),
  h("label", {}, "VEE run ", h("select", { name: "run", id: "vee-run", "aria-label": "VEE run" },
    runs.map((r) => h("option", { value: r.run_id, selected: r === run },
      `#${r.run_id}: ${fmt.time(r.period_start).slice(0, 10)} → ${fmt.time(r.period_end).slice(0, 10)}${r.finished_at ? "" : " (unfinished)"}`)))),
  h("button", { type: "submit" }, "Show"));
  if (!run) { view.replaceChildren(form, note("No VEE run yet: run `wattrail vee run --period YYYY-MM`.")); return; }
  if (!meter) { view.replaceChildren(form, note("Give a customer meter's id to see its meter-days and intervals.")); return; }

  let days;
  try {
    days = (await all(`vee/meters/${encodeURIComponent(meter)}/days`, { run: run.run_id }, { maxPages: 5 })).items;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    view.replaceChildren(form, note(err.problem?.detail || err.message, "warn"));
    return;
  }
  if (ctx.stale()) return;
  const here = (day) => `#/vee/${encodeURIComponent(meter)}?run=${run.run_id}&day=${day}`;
  const day = days.find((d) => d.day === params.day) || days.find((d) => d.status !== "valid") || null;
  const count = (s) => days.filter((d) => d.status === s).length;
  const daysTable = table([
    { label: "Local day", value: (d) => h("a", { href: here(d.day) }, d.day) },
    { label: "Status", value: (d) => h("span", { class: `badge ${STATUS[d.status] || ""}` }, d.status) },
    { label: "Rules failed", value: (d) => (d.rules_failed.length ? d.rules_failed.join(", ") : "none") },
    { label: "Intervals", class: "num", value: (d) => d.intervals },
    { label: "Estimated", class: "num", value: (d) => d.estimated },
    { label: "Missing after VEE", class: "num", value: (d) => d.missing },
  ], days, { onRowClick: (d) => ctx.go(here(d.day)), testid: "vee-days-table" });
  for (const tr of daysTable.querySelectorAll("tbody tr")) tr.classList.toggle("selected", !!day && tr.firstChild.textContent === day.day);
  const dayCard = card(day ? `Intervals of ${day.day} (local)` : "Intervals");
  view.replaceChildren(form,
    card(`Meter ${meter} in VEE run #${run.run_id}`, h("div", { class: "stats", "data-testid": "vee-summary" },
      stat("Days", days.length), stat("Valid", count("valid")), stat("Estimated", count("estimated")), stat("Failed", count("failed")),
      stat("Step", `${run.step_s / 60} min`)),
    h("p", { class: "hint" }, "A day is estimated when VEE filled an interval of it, failed when an interval is still missing after VEE (docs/mdm.md).")),
    dayCard, card("Meter-days", daysTable));
  if (!day) { dayCard.append(note("Every day of the meter is valid as read: nothing was flagged or changed.")); return; }
  await intervals(dayCard, ctx, meter, day);
}

async function intervals(dayCard, ctx, meter, day) {
  // the listing takes instants; the local day lies within a day either side of its UTC date
  const found = await all(`vee/meters/${encodeURIComponent(meter)}/intervals`, { from: isoDay(day.day, -1), to: isoDay(day.day, 2) }, { maxPages: 10 });
  if (ctx.stale()) return;
  const versions = found.items.filter((v) => localDay(v) === day.day);
  const touched = new Set(versions.map((v) => v.bucket)).size;
  dayCard.append(h("div", { class: "stats" },
    stat("Status", h("span", { class: `badge ${STATUS[day.status] || ""}` }, day.status)),
    stat("Rules failed", day.rules_failed.length ? day.rules_failed.join(", ") : "none"),
    stat("Intervals touched", `${touched} of ${day.intervals}`), stat("Still missing", day.missing)));
  if (!versions.length) {
    dayCard.append(note("No interval of this day was flagged or edited: post-VEE equals raw for all of them."));
    return;
  }
  dayCard.append(table([
    { label: "Interval (local)", value: (v) => wallClock(v) },
    { label: "Version", value: (v) => (v.source === "manual" ? `manual edit #${v.version}` : `VEE run #${v.run_id ?? v.version}`) },
    { label: "Raw", class: "num", value: (v) => energy(v.raw_kwh) },
    { label: "Post-VEE", class: "num", value: (v) => energy(v.value_kwh) },
    { label: "Rules", value: (v) => (v.rules.length ? v.rules.join(", ") : "–") },
    { label: "Method", value: (v) => v.method },
    { label: "In force", value: (v) => (v.in_force ? "✓ in force" : "") },
    { label: "Edited by", value: (v) => v.edited_by ?? "–" },
    { label: "Reason", value: (v) => v.reason ?? "–" },
    { label: "Written", value: (v) => edited(v.created_at) },
  ], versions, { testid: "vee-intervals-table" }),
  h("p", { class: "hint" }, `Every version of the ${touched} interval(s) VEE or a person touched: manual edits first, then VEE runs, newest first. `
    + "The other intervals are valid as read (post-VEE = raw). A manual edit applies from the next VEE run."));
  if (found.truncated) dayCard.append(note("Only the first pages are shown.", "warn")); // append() would print a null
}
