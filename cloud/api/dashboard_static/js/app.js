// The shell: token login, the analysis-run picker, and a hash router over the pages.
// Routes: #/login  #/map  #/loss?level=&id=  #/suspects  #/suspects/<meter>  #/quality
//         #/regional?region=  #/revenue?period=  #/vee/<meter>?run=&day=  #/archive?check=&kind=  #/audit

import { ApiError, get, setUnauthorizedHandler, token } from "./api.js";
import { fmt, h, note } from "./dom.js";
import * as archive from "./pages/archive.js";
import * as audit from "./pages/audit.js";
import * as loss from "./pages/loss.js";
import * as map from "./pages/map.js";
import * as quality from "./pages/quality.js";
import * as regional from "./pages/regional.js";
import * as revenue from "./pages/revenue.js";
import * as suspects from "./pages/suspects.js";
import * as vee from "./pages/vee.js";

const PAGES = { map, loss, suspects, quality, regional, revenue, vee, archive, audit };
const RUN_KEY = "wattrail.run";
const main = document.getElementById("main");
const ctx = { runs: [], run: null };
let renderSeq = 0; // a slow page that finishes after the user moved on must not draw

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [page, ...rest] = path.split("/").map(decodeURIComponent);
  return { page: page || "map", rest, params: Object.fromEntries(new URLSearchParams(query)) };
}

export function go(hash) { location.hash = hash; }

function showLogin(message = null) {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  document.getElementById("run-info").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false",
    placeholder: "wtr_…", required: true, "aria-label": "API token" });
  const error = h("p", { class: "note error", id: "login-error", role: "alert", hidden: !message }, message || "");
  const form = h("form", { class: "login card", id: "login-form" },
    h("h2", {}, "Sign in with an API token"),
    h("p", {}, "Paste a bearer token (", h("code", {}, "wattrail token create --role engineer|auditor --name you"),
      "). It stays in this browser tab only (sessionStorage) and is sent to this server's API alone."),
    input, h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const secret = input.value.trim();
    try {
      await get("analysis/runs", { limit: 1 }, { tokenOverride: secret });
    } catch (err) {
      error.hidden = false;
      error.textContent = err instanceof ApiError && err.status === 401
        ? "The API does not know this token (or it was revoked)." : `Sign-in failed: ${err.message}`;
      return;
    }
    token.set(secret);
    sessionStorage.removeItem("wattrail.auditDenied");
    await start(true);
  });
  main.replaceChildren(form);
  input.focus();
}

async function loadRuns() {
  const page = await get("analysis/runs", { limit: 50 });
  ctx.runs = page.items;
  const wanted = Number(sessionStorage.getItem(RUN_KEY));
  ctx.run = ctx.runs.find((r) => r.run_id === wanted) || ctx.runs[0] || null;
  const select = document.getElementById("run-select");
  select.replaceChildren(...ctx.runs.map((r) => h("option", { value: r.run_id, selected: r === ctx.run },
    `#${r.run_id}: ${fmt.time(r.period_start).slice(0, 10)} → ${fmt.time(r.period_end).slice(0, 10)}`)));
  select.disabled = ctx.runs.length === 0;
  showRunInfo();
}

function showRunInfo() {
  const info = document.getElementById("run-info");
  info.hidden = false;
  if (!ctx.run) {
    info.replaceChildren("No analysis run yet: the reports appear after `wattrail analyze` has run.");
    return;
  }
  const r = ctx.run;
  const parts = [`Run #${r.run_id}: ${fmt.time(r.period_start)} to ${fmt.time(r.period_end)}, `
    + `${r.step_s / 60}-min intervals, ${r.meters} meters on ${r.transformers} transformers and ${r.feeders} feeders, `
    + `readings ${fmt.share(r.completeness)} complete.`];
  // what the data lacked and which indicators could not run, as the CLI says it
  const notes = [...(r.notes || []),
    ...Object.entries(r.not_computed || {}).map(([k, why]) => `${k} not computed: ${why}`)];
  if (notes.length) {
    const list = h("ul", { class: "run-notes" }, ...notes.map((n) => h("li", {}, n)));
    parts.push(list);
  }
  info.replaceChildren(...parts);
}

async function render() {
  const seq = ++renderSeq;
  const { page, rest, params } = parseHash();
  if (!token.get()) return showLogin();
  const mod = PAGES[page];
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  document.getElementById("nav-audit").hidden = sessionStorage.getItem("wattrail.auditDenied") === "1";
  if (!mod) {
    main.replaceChildren(note(`No page "${page}".`, "error"));
    return;
  }
  const view = h("div", { class: "page", id: `page-${page}`, "data-state": "loading" }, h("p", { class: "loading" }, "Loading…"));
  main.replaceChildren(view);
  const stale = () => seq !== renderSeq;
  try {
    if (!ctx.run && mod.needsRun !== false) {
      view.replaceChildren(note("No analysis run yet: the reports appear after `wattrail analyze` has run."));
    } else {
      await mod.render(view, { ...ctx, stale, go }, rest, params);
    }
    if (!stale()) view.dataset.state = "ready";
  } catch (err) {
    if (stale()) return;
    console.warn(err);
    view.dataset.state = "error";
    view.replaceChildren(note(err.message || String(err), "error"));
  }
}

async function start(fresh = false) {
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  try {
    await loadRuns();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) main.replaceChildren(note(err.message, "error"));
    return;
  }
  if (fresh && (!location.hash || location.hash.startsWith("#/login"))) go("#/map");
  else await render();
}

setUnauthorizedHandler(() => {
  token.clear();
  showLogin("The token was rejected (unknown or revoked): sign in again.");
});
document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  sessionStorage.removeItem(RUN_KEY);
  go("#/login");
  showLogin();
});
document.getElementById("run-select").addEventListener("change", (e) => {
  sessionStorage.setItem(RUN_KEY, e.target.value);
  ctx.run = ctx.runs.find((r) => String(r.run_id) === e.target.value) || ctx.run;
  showRunInfo();
  render();
});
window.addEventListener("hashchange", () => { if (token.get()) render(); });

if (token.get()) start(); else showLogin();
