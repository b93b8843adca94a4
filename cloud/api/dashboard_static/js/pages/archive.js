// Customer archive: one archive check (the latest by default; `wattrail archive check` makes
// them, docs/archive.md). Its period, counts and notes; the completeness findings by kind
// (object, region, severity, evidence, fix), filterable by kind; the findings per region; and
// the connectivity suspicions: the transformer and phase the voltages and the energy balance
// say a meter hangs on, against the recorded ones. A check never changes the archive:
// accepting a suggestion is an admin's act (`wattrail archive accept`, or the API).

import { all, get } from "../api.js";
import { card, fmt, h, note, stat, table } from "../dom.js";

export const needsRun = false; // the archive is checked without an analysis run
const SEVERITY = { high: "bad", medium: "warn", low: "muted" }; // severity -> badge colour
const STATUS = { open: "warn", accepted: "ok", superseded: "muted" };
const phase = (p) => (p === null || p === undefined ? "–" : `L${p + 1}`); // 0..2 = L1..L3
const written = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }) : "–");
const region = (r) => r ?? "(none)";

/** A value of a finding's evidence, compact: numbers short, lists and objects inline. */
function compact(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fmt.num(v, 3);
  if (Array.isArray(v)) return `[${v.map(compact).join(", ")}]`;
  if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${k}: ${compact(x)}`).join(", ")}}`;
  return String(v);
}
// `*_ts` values are Unix seconds: shown as times
const evidence = (ev) => Object.entries(ev || {}).map(([k, v]) => `${k}: ${k.endsWith("_ts") && typeof v === "number"
  ? fmt.time(v * 1000) : compact(v)}`).join(", ") || "–";

export async function render(view, ctx, rest, params) {
  const recent = await get("archive/checks", { limit: 50 });
  if (ctx.stale()) return;
  let checks = recent.items;
  if (!checks.length) { view.replaceChildren(note("No archive check yet: run `wattrail archive check`.")); return; }
  let check = params.check ? checks.find((c) => String(c.check_id) === params.check) : checks[0];
  if (!check && params.check && recent.next_cursor) { // an older check: page on to it
    checks = (await all("archive/checks", {}, { maxPages: 20, limit: 1000 })).items;
    if (ctx.stale()) return;
    check = checks.find((c) => String(c.check_id) === params.check);
  }
  if (!check) { view.replaceChildren(note(`No archive check ${params.check}.`, "warn")); return; }
  const kind = params.kind || "";
  const here = (q) => `#/archive?${new URLSearchParams(Object.fromEntries(Object.entries(q).filter(([, v]) => v)))}`;

  // the counts of every check finished since this one, kept for this one (oldest check first)
  const [counts, findings, suspicions] = await Promise.all([
    all("archive/issues/counts", { since: check.finished_at }, { maxPages: 10 }),
    all("archive/issues", { check_id: check.check_id, kind }, { maxPages: 5, limit: 1000 }),
    all("archive/connectivity", { check_id: check.check_id }, { maxPages: 5, limit: 1000 }),
  ]);
  if (ctx.stale()) return;
  const mine = counts.items.filter((c) => c.check_id === check.check_id);
  const byKind = {}, byRegion = {};
  for (const c of mine) {
    byKind[c.kind] = (byKind[c.kind] || 0) + c.n;
    const r = (byRegion[region(c.region_id)] ||= { region: region(c.region_id), n: 0, kinds: {} });
    r.n += c.n;
    r.kinds[c.kind] = (r.kinds[c.kind] || 0) + c.n;
  }
  const kinds = Object.keys(byKind).sort((a, b) => byKind[b] - byKind[a] || a.localeCompare(b));

  const controls = h("form", { class: "controls", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "Check ", h("select", { id: "archive-check", "aria-label": "archive check",
      onchange: (e) => ctx.go(here({ check: e.target.value, kind })) },
    checks.map((c) => h("option", { value: c.check_id, selected: c === check },
      `#${c.check_id}: ${fmt.time(c.period_start).slice(0, 10)} → ${fmt.time(c.period_end).slice(0, 10)}`)))),
    h("label", {}, "Finding kind ", h("select", { id: "archive-kind", "aria-label": "finding kind",
      onchange: (e) => ctx.go(here({ check: check.check_id, kind: e.target.value })) },
    h("option", { value: "", selected: !kind }, `all kinds (${check.findings})`),
    kinds.map((k) => h("option", { value: k, selected: k === kind }, `${k} (${byKind[k]})`)),
    kind && !byKind[kind] ? h("option", { value: kind, selected: true }, `${kind} (0)`) : null)));

  const notes = check.notes || [];
  const header = card(`Archive check #${check.check_id}`, h("div", { class: "stats", "data-testid": "archive-summary" },
    stat("Readings from", fmt.time(check.period_start)), stat("to", fmt.time(check.period_end)),
    stat("Step", `${check.step_s / 60} min`), stat("Findings", check.findings),
    stat("Suspicions", check.suspicions), stat("Finished", written(check.finished_at))),
  notes.length ? h("ul", { class: "run-notes", "data-testid": "archive-notes" },
    notes.map((n) => h("li", {}, typeof n === "string" ? n : compact(n)))) : h("p", { class: "hint" }, "No notes: both analyses ran."),
  h("p", { class: "hint" }, "A check never changes the archive. An admin accepts a suggestion with "
    + "`wattrail archive accept` or POST /v1/archive/connectivity/{meter}/accept (docs/archive.md)."));

  view.replaceChildren(controls, header, suspicionsCard(suspicions),
    findingsCard(findings, kind, byKind, kinds, (k) => here({ check: check.check_id, kind: k })),
    regionsCard(Object.values(byRegion), kinds, counts.truncated));
}

function suspicionsCard(list) {
  const s = list.items;
  const changed = (a, b, text) => (a !== b ? h("strong", {}, text) : text);
  return card(`Connectivity suspicions: ${s.length}`, s.length === 0
    ? note("The voltages and the energy balance agree with the recorded transformer and phase of every meter.")
    : table([
      { label: "Rank", class: "num", value: (x) => x.rank },
      { label: "Meter", value: (x) => x.meter_id },
      { label: "Kind", value: (x) => x.kind },
      { label: "Recorded transformer", value: (x) => x.recorded_transformer_id },
      { label: "Recorded phase", value: (x) => phase(x.recorded_phase) },
      { label: "Suggested transformer", value: (x) => changed(x.suggested_transformer_id, x.recorded_transformer_id, x.suggested_transformer_id) },
      { label: "Suggested phase", value: (x) => changed(x.suggested_phase, x.recorded_phase, phase(x.suggested_phase)) },
      { label: "Confidence", class: "num", value: (x) => fmt.num(x.confidence, 2) },
      { label: "r recorded vs best other", class: "num", value: (x) => `${fmt.num(x.evidence?.r_recorded, 3)} vs ${fmt.num(x.evidence?.r_best_other, 3)}`
        + (x.evidence?.best_other_transformer_id ? ` (${x.evidence.best_other_transformer_id})` : "") },
      { label: "Balance gain", class: "num", value: (x) => fmt.num(x.evidence?.balance_gain, 2) },
      { label: "Status", value: (x) => h("span", { class: `badge ${STATUS[x.status] || ""}` }, x.status) },
    ], s, { testid: "archive-suspicions" }),
  s.length ? h("p", { class: "hint" }, "r: the correlation of the meter's voltage with its recorded transformer's and with the best other one's; "
    + "balance gain: how much of the energy-balance residual moving the meter removes (docs/archive.md).") : null,
  list.truncated ? note("Only the first 5,000 suspicions are listed.", "warn") : null);
}

function findingsCard(list, kind, byKind, kinds, hrefFor) {
  const groups = {};
  for (const f of list.items) (groups[f.kind] ||= []).push(f);
  const shown = Object.keys(groups).sort((a, b) => kinds.indexOf(a) - kinds.indexOf(b) || a.localeCompare(b));
  const total = Object.values(byKind).reduce((a, b) => a + b, 0);
  const body = [];
  if (!kind && kinds.length) {
    body.push(table([
      { label: "Kind", value: (k) => h("a", { href: hrefFor(k) }, k) },
      { label: "Findings", class: "num", value: (k) => byKind[k] },
    ], kinds, { testid: "archive-kinds" }));
  }
  if (!list.items.length) body.push(note(kind ? `No ${kind} finding in this check.` : "No completeness finding: the archive matches the data."));
  for (const k of shown) {
    body.push(h("h3", {}, `${k} (${byKind[k] ?? groups[k].length})`), table([
      { label: "Object", value: (f) => f.object_id },
      { label: "Region", value: (f) => region(f.region_id) },
      { label: "Severity", value: (f) => h("span", { class: `badge ${SEVERITY[f.severity] || ""}` }, f.severity) },
      { label: "Evidence", value: (f) => h("span", { class: "evidence" }, evidence(f.evidence)) },
      { label: "Fix", value: (f) => h("span", { class: "fix" }, f.fix) },
    ], groups[k], { testid: `archive-findings-${k}` }));
  }
  if (list.truncated) body.push(note(`Only the first ${list.items.length} findings are listed; pick a kind to see the rest.`, "warn"));
  return card(kind ? `Completeness findings: ${kind}` : `Completeness findings: ${total}`,
    kind ? h("p", {}, h("a", { href: hrefFor("") }, "← all kinds")) : null, ...body);
}

function regionsCard(regions, kinds, truncated) {
  regions.sort((a, b) => (a.region === "(none)") - (b.region === "(none)") || a.region.localeCompare(b.region));
  return card("Findings per region", regions.length === 0 ? note("No findings.") : table([
    { label: "Region", value: (r) => r.region },
    { label: "Findings", class: "num", value: (r) => r.n },
    { label: "By kind", value: (r) => kinds.filter((k) => r.kinds[k]).map((k) => `${k} ${r.kinds[k]}`).join(", ") },
  ], regions, { testid: "archive-regions" }),
  h("p", { class: "hint" }, "(none): findings without a region, such as meters the archive does not know."),
  truncated ? note("Only the first pages of counts were read.", "warn") : null);
}
