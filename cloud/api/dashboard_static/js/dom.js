// DOM helpers. Data from the API only ever enters the page as text (textContent, attribute
// values), never as markup, so a meter id or a quarantine detail cannot inject anything.

/** h("td", {class: "num"}, "12.5") -> element; children: strings, nodes, arrays, null. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const NF = (digits) => new Intl.NumberFormat("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const nf0 = NF(0), nf1 = NF(1), nf2 = NF(2), nf3 = NF(3);

export const fmt = {
  kwh: (wh) => (wh === null || wh === undefined ? "–" : `${nf1.format(wh / 1000)} kWh`),
  pct: (p) => (p === null || p === undefined ? "–" : `${nf1.format(p)} %`),
  share: (x) => (x === null || x === undefined ? "–" : `${nf0.format(100 * x)} %`),
  num: (x, d = 2) => (x === null || x === undefined ? "–" : [nf0, nf1, nf2, nf3][d].format(x)),
  money: (x) => (x === null || x === undefined ? "–" : nf2.format(x)),
  time: (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–"),
  duration: (s) => {
    if (s === null || s === undefined) return "ongoing";
    const hrs = Math.floor(s / 3600), min = Math.round((s % 3600) / 60);
    return hrs ? `${hrs} h ${min} min` : `${min} min`;
  },
};

/** A table: columns [{label, value: row => text|node, class?}], rows, optional onRowClick. */
export function table(columns, rows, { onRowClick = null, caption = null, testid = null } = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class, scope: "col" }, c.label))));
  const tbody = h("tbody", {}, rows.map((r) => {
    const tr = h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.value(r))));
    if (onRowClick) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.addEventListener("click", () => onRowClick(r));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") onRowClick(r); });
    }
    return tr;
  }));
  return h("table", { class: "data", "data-testid": testid }, caption ? h("caption", {}, caption) : null, thead, tbody);
}

export const card = (title, ...body) => h("section", { class: "card" }, h("h2", {}, title), ...body);
export const note = (text, kind = "info") => h("p", { class: `note ${kind}`, role: kind === "error" ? "alert" : null }, text);
export const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));

/** Loss % -> colour: green (<= 3 %), yellow (~8 %), red (>= 15 %); grey when unknown. */
export function lossColour(pct) {
  if (pct === null || pct === undefined || !Number.isFinite(pct)) return "#9aa3ad";
  const stops = [[3, [46, 160, 67]], [8, [230, 180, 30]], [15, [210, 50, 40]]];
  if (pct <= stops[0][0]) return rgb(stops[0][1]);
  for (let i = 1; i < stops.length; i++) {
    const [p1, c1] = stops[i - 1], [p2, c2] = stops[i];
    if (pct <= p2) {
      const t = (pct - p1) / (p2 - p1);
      return rgb(c1.map((v, k) => v + t * (c2[k] - v)));
    }
  }
  return rgb(stops[stops.length - 1][1]);
}
const rgb = (c) => `rgb(${c.map(Math.round).join(",")})`;

export function link(href, text) { return h("a", { href }, text); }
