// Loss map: transformers at their archive coordinates, coloured by loss % of the run, on a
// plain Leaflet map with NO tile layer (no tiles are reachable offline): the background is
// blank, Leaflet only projects lon/lat (Web Mercator) and draws SVG circles. Lines run from
// each region's substation to its transformers; suspects (score >= 0.5) are red dots at their
// customers' coordinates.

import { all, features } from "../api.js";
import { card, fmt, h, lossColour, note, table } from "../dom.js";

const L = window.L;

export async function render(view, ctx) {
  const runId = ctx.run.run_id;
  const [txs, lossRows, regions, sus] = await Promise.all([
    features("map/transformers"),
    all("loss", { level: "transformer", run_id: runId }),
    all("regions"),
    all("suspects", { run_id: runId, min_score: 0.5 }, { maxPages: 5 }),
  ]);
  if (ctx.stale()) return;
  const lossBy = new Map(lossRows.items.map((r) => [r.entity_id, r]));
  const suspectBy = new Map(sus.items.map((s) => [s.meter_id, s]));
  let customers = [];
  if (sus.items.length) {
    const byTx = [...new Set(sus.items.map((s) => s.transformer_id))];
    // only the customers of transformers that have suspects: a few requests, not the archive
    const layers = await Promise.all(byTx.slice(0, 50).map((t) => features("map/customers", { transformer_id: t })));
    customers = layers.flat().filter((f) => suspectBy.has(f.properties.meter_id));
  }
  if (ctx.stale()) return;

  const mapEl = h("div", { id: "loss-map", class: "map", "data-testid": "loss-map", role: "img",
    "aria-label": "map of transformers coloured by loss percentage" });
  const legend = h("div", { class: "legend" }, [0, 3, 6, 9, 12, 15].map((p) => h("span", { class: "swatch-item" },
    h("span", { class: "swatch", style: { background: lossColour(p) } }), p === 15 ? "≥ 15 %" : `${p} %`)),
  h("span", { class: "swatch-item" }, h("span", { class: "swatch", style: { background: lossColour(null) } }), "no input reading"),
  h("span", { class: "swatch-item" }, h("span", { class: "swatch dot", style: { background: "#b3001b" } }), "theft suspect"));
  const info = h("div", { class: "map-info", id: "map-info" }, "Click a transformer for its loss report.");
  const worst = [...lossRows.items].sort((a, b) => (b.loss_pct ?? -1e9) - (a.loss_pct ?? -1e9)).slice(0, 10);
  view.replaceChildren(
    card("Transformers by loss %", mapEl, legend, info,
      txs.length === 0 ? note("No transformer in the archive has coordinates.", "warn") : null),
    card("Highest losses", table([
      { label: "Transformer", value: (r) => r.entity_id },
      { label: "Loss", class: "num", value: (r) => fmt.pct(r.loss_pct) },
      { label: "NTL", class: "num", value: (r) => fmt.kwh(r.ntl_wh) },
      { label: "Revenue at risk", class: "num", value: (r) => fmt.money(r.revenue_at_risk) },
      { label: "Completeness", class: "num", value: (r) => fmt.share(r.completeness) },
    ], worst, { onRowClick: (r) => ctx.go(`#/loss?level=transformer&id=${encodeURIComponent(r.entity_id)}`), testid: "worst-table" })),
  );

  const map = L.map(mapEl, { attributionControl: false, zoomSnap: 0.25, preferCanvas: false });
  L.control.scale({ imperial: false }).addTo(map);
  const subs = new Map(regions.items.filter((r) => r.lat !== null && r.lon !== null).map((r) => [r.region_id, r]));
  const bounds = [];
  for (const f of txs) {
    const [lon, lat] = f.geometry.coordinates;
    const sub = subs.get(f.properties.region_id);
    if (sub) L.polyline([[sub.lat, sub.lon], [lat, lon]], { color: "#8895a3", weight: 1, opacity: 0.6, interactive: false }).addTo(map);
    bounds.push([lat, lon]);
  }
  for (const r of subs.values()) {
    L.circleMarker([r.lat, r.lon], { radius: 6, color: "#222", weight: 2, fillColor: "#fff", fillOpacity: 1, className: "wt-substation" })
      .bindTooltip(`${r.name} substation (${r.region_id})`).addTo(map);
    bounds.push([r.lat, r.lon]);
  }
  for (const c of customers) {
    const [lon, lat] = c.geometry.coordinates;
    const s = suspectBy.get(c.properties.meter_id);
    L.circleMarker([lat, lon], { radius: 3, stroke: false, fillColor: "#b3001b", fillOpacity: 0.85, className: "wt-suspect" })
      .bindTooltip(`suspect ${s.meter_id}: score ${s.score.toFixed(2)} (${s.strongest_indicator || "?"})`)
      .on("click", () => ctx.go(`#/suspects/${encodeURIComponent(s.meter_id)}`)).addTo(map);
  }
  for (const f of txs) {
    const [lon, lat] = f.geometry.coordinates;
    const l = lossBy.get(f.id) || null;
    const pct = l ? l.loss_pct : null;
    const marker = L.circleMarker([lat, lon], {
      radius: 9 + Math.min(8, Math.sqrt((f.properties.rating_kva || 0) / 25)), color: "#1b1f24", weight: 1,
      fillColor: lossColour(pct), fillOpacity: 0.9, className: "wt-tx",
    }).addTo(map);
    marker.bindTooltip(`${f.id}: ${l ? fmt.pct(pct) : "not in this run"}`);
    marker.on("click", () => showTransformer(info, f, l, ctx));
    marker.getElement()?.setAttribute("data-transformer", f.id);
  }
  if (bounds.length) map.fitBounds(bounds, { padding: [30, 30] });
  else map.setView([0, 0], 2);
  view.dataset.transformers = String(txs.length);
  view.dataset.suspects = String(customers.length);
}

function showTransformer(info, f, l, ctx) {
  const p = f.properties;
  info.replaceChildren(
    h("h3", {}, `Transformer ${f.id}`),
    h("p", {}, `Feeder ${p.feeder_id}, region ${p.region_id}, ${fmt.num(p.rating_kva, 0)} kVA.`),
    l ? h("dl", { class: "kv" },
      h("dt", {}, "Loss"), h("dd", {}, `${fmt.kwh(l.loss_wh)} (${fmt.pct(l.loss_pct)})`),
      h("dt", {}, "Technical"), h("dd", {}, fmt.kwh(l.technical_wh)),
      h("dt", {}, "Non-technical"), h("dd", {}, `${fmt.kwh(l.ntl_wh)} ± ${fmt.kwh(l.ntl_sigma_wh)}`),
      h("dt", {}, "Revenue at risk"), h("dd", {}, fmt.money(l.revenue_at_risk)),
      h("dt", {}, "Completeness"), h("dd", {}, fmt.share(l.completeness) + (l.low_confidence ? " (low confidence)" : "")))
      : h("p", {}, "No loss figures for it in this run."),
    h("p", {}, h("a", { href: `#/loss?level=transformer&id=${encodeURIComponent(f.id)}` }, "Loss series →"), " ",
      h("a", { href: `#/suspects?transformer=${encodeURIComponent(f.id)}` }, "Its suspects →")),
  );
}
