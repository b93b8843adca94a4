// Drives Debian's Chromium with playwright-core through a list of steps and writes what it saw
// as JSON, for tests/e2e/test_dashboard.py to assert on (the assertions live in Python).
//
//   node dashboard_driver.cjs PLAN.json RESULT.json
//
// PLAN: {playwright: "<dir of playwright-core>", chromium: "/usr/bin/chromium", base: URL,
//        artifacts: DIR, steps: [{do: "goto"|"login"|"click"|"waitReady"|"collect", ...}]}
// RESULT: {steps: [...], console: [...], pageErrors: [...], failed: [...], badResponses: [...],
//          requests: [urls], error: null | "message"}
"use strict";
const fs = require("fs");
const path = require("path");

const [planFile, resultFile] = process.argv.slice(2);
const plan = JSON.parse(fs.readFileSync(planFile, "utf8"));
const { chromium } = require(plan.playwright);

// Chromium as this machine can run it: headless, no sandbox (root), no background traffic to
// Google (the network is closed: those connections fail loudly), a fresh profile per run.
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// What a page shows, counted in the DOM: the tests compare these with the database.
function facts() {
  const view = document.querySelector("#main .page") || document.querySelector("#main");
  const count = (sel) => document.querySelectorAll(sel).length;
  const charts = [...document.querySelectorAll(".chart")].map((c) => ({
    testid: c.dataset.testid || null, points: Number(c.dataset.points || 0),
    canvases: c.querySelectorAll("canvas").length,
    width: c.querySelector("canvas") ? c.querySelector("canvas").width : 0,
  }));
  const tables = {};
  for (const t of document.querySelectorAll("table.data[data-testid]")) tables[t.dataset.testid] = t.querySelectorAll("tbody tr").length;
  return {
    url: location.href, state: view && view.dataset ? view.dataset.state || null : null,
    pageId: view ? view.id : null, denied: view && view.dataset ? view.dataset.denied || null : null,
    text: (document.querySelector("#main") || document.body).innerText.slice(0, 20000),
    transformerMarkers: count("path.wt-tx"), suspectMarkers: count("path.wt-suspect"),
    substationMarkers: count("path.wt-substation"), mapPanes: count(".leaflet-map-pane"),
    tileImages: count("img.leaflet-tile"), charts, tables,
    navAuditHidden: document.getElementById("nav-audit").hidden,
    loginVisible: !!document.getElementById("login-form"),
    loginError: document.getElementById("login-error") ? document.getElementById("login-error").textContent : null,
    storedToken: sessionStorage.getItem("wattrail.token") !== null,
  };
}

async function main() {
  const result = { steps: [], console: [], pageErrors: [], failed: [], badResponses: [], requests: [], error: null };
  const profile = fs.mkdtempSync(path.join(plan.artifacts, ".chromium-profile-"));
  // a persistent context on a fresh, empty profile folder is Playwright's way of passing
  // --user-data-dir (it refuses that flag in `args`)
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: plan.chromium, headless: true, args: ARGS, viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  let current = "start";
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") result.console.push({ step: current, type: m.type(), text: m.text(), url: m.location().url }); });
  page.on("pageerror", (e) => result.pageErrors.push({ step: current, text: String(e.stack || e) }));
  page.on("requestfailed", (r) => result.failed.push({ step: current, url: r.url(), error: r.failure() && r.failure().errorText }));
  page.on("request", (r) => result.requests.push(r.url()));
  page.on("response", (r) => { if (r.status() >= 400) result.badResponses.push({ step: current, url: r.url(), status: r.status() }); });
  const ready = async (timeout = 30000) => {
    await page.waitForFunction(() => {
      const v = document.querySelector("#main .page");
      return (v && v.dataset.state && v.dataset.state !== "loading") || document.getElementById("login-form");
    }, null, { timeout });
    await page.waitForTimeout(150); // uPlot and Leaflet draw on the next animation frame
  };
  try {
    for (const step of plan.steps) {
      current = step.name || step.do;
      const out = { name: current, do: step.do };
      if (step.do === "goto") {
        await page.goto(plan.base + step.path, { waitUntil: "load" });
        if (step.hash) { await page.evaluate((h) => { location.hash = h; }, step.hash); }
        await ready();
      } else if (step.do === "login") {
        await page.fill("#token", step.token);
        await page.click("#login-form button[type=submit]");
        if (step.expectError) await page.waitForFunction(() => !document.getElementById("login-error").hidden);
        else { await page.waitForSelector("#page-map", { timeout: 30000 }); await ready(); }
      } else if (step.do === "hash") {
        await page.evaluate((h) => { location.hash = h; }, step.hash);
        await page.waitForFunction((id) => { const v = document.querySelector("#main .page"); return v && v.id === id && v.dataset.state !== "loading"; }, step.page, { timeout: 30000 });
        await ready();
      } else if (step.do === "click") {
        await page.click(step.selector);
        if (step.page) await page.waitForFunction((a) => { const v = document.querySelector("#main .page"); return v && v.id === a.page && location.hash.startsWith(a.prefix) && v.dataset.state !== "loading"; }, { page: step.page, prefix: step.hashPrefix || "#" }, { timeout: 30000 });
        await ready();
      }
      if (step.collect) out.facts = await page.evaluate(facts);
      if (step.screenshot) {
        const file = path.join(plan.artifacts, `${step.screenshot}.png`);
        await page.screenshot({ path: file, fullPage: true });
        out.screenshot = file;
      }
      result.steps.push(out);
    }
  } catch (err) {
    result.error = `${current}: ${String(err.message || err).split("\n").slice(0, 3).join(" ")}`;
    try {
      const file = path.join(plan.artifacts, "failure.png");
      await page.screenshot({ path: file, fullPage: true });
      result.failureScreenshot = file;
      result.failureFacts = await page.evaluate(facts);
    } catch (_) { /* the page may be gone */ }
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  fs.writeFileSync(resultFile, JSON.stringify(result, null, 1));
}

main().catch((err) => {
  fs.writeFileSync(resultFile, JSON.stringify({ error: `driver: ${err.stack || err}`, steps: [] }));
  process.exit(1);
});
