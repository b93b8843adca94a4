// Charts with the vendored uPlot (global `uPlot`, canvas). Every chart's container carries
// data-points = how many finite values it plots, so people and tests can tell "drawn, with
// data" from "drawn, empty".

import { h } from "./dom.js";

const uPlot = window.uPlot;
export const COLOURS = {
  technical: "#3b7dd8", ntl: "#d2452c", sigma: "#e89a8d", loss: "#6b4fbb", energy: "#2e8b57",
  voltage: ["#c77c02", "#7a5195", "#2f4b7c"], forecast: "#d2452c", profile: "#3b7dd8", bar: "#3b7dd8",
};

const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const finiteCount = (arrays) => arrays.reduce((n, a) => n + a.filter((v) => v !== null && Number.isFinite(v)).length, 0);

function frame(container, title, testid) {
  const plot = h("div", { class: "chart", "data-testid": testid });
  container.append(h("figure", { class: "chart-figure" }, title ? h("figcaption", {}, title) : null, plot));
  return plot;
}

function mount(plot, opts, data) {
  const width = Math.max(320, plot.clientWidth || plot.parentElement.clientWidth || 800);
  const u = new uPlot({ width, height: 280, ...opts }, data, plot);
  new ResizeObserver(() => {
    const w = Math.max(320, plot.clientWidth);
    if (Math.abs(w - u.width) > 4) u.setSize({ width: w, height: 280 });
  }).observe(plot);
  return u;
}

/**
 * A time series: x = unix seconds, series [{label, values, colour, fill, dash, scale: "y"|"y2"}];
 * `shade` = {from, to} (unix seconds) draws a band, e.g. a suspect's evidence period.
 */
export function timeChart(container, { title, x, series, yLabel, y2Label = null, shade = null, testid = null }) {
  const plot = frame(container, title, testid);
  const data = [x, ...series.map((s) => s.values)];
  plot.dataset.points = String(finiteCount(series.map((s) => s.values)));
  const axes = [{ }, { label: yLabel, scale: "y", size: 70 }];
  if (y2Label) axes.push({ label: y2Label, scale: "y2", side: 1, grid: { show: false }, size: 60 });
  const hooks = shade ? { drawClear: [(u) => {
    const x0 = u.valToPos(shade.from, "x", true), x1 = u.valToPos(shade.to, "x", true);
    const { top, height, left, width } = u.bbox;
    const a = Math.max(left, Math.min(x0, x1)), b = Math.min(left + width, Math.max(x0, x1));
    if (b > a) {
      u.ctx.save();
      u.ctx.fillStyle = "rgba(210, 69, 44, 0.12)";
      u.ctx.fillRect(a, top, b - a, height);
      u.ctx.restore();
    }
  }] } : {};
  return mount(plot, {
    tzDate: utc,
    scales: { x: { time: true }, y: { auto: true }, ...(y2Label ? { y2: { auto: true } } : {}) },
    axes,
    hooks,
    series: [{}, ...series.map((s) => ({
      label: s.label, stroke: s.colour, width: 1.5, scale: s.scale || "y", dash: s.dash,
      fill: s.fill ? s.colour + "33" : undefined, spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "–" : v.toFixed(s.digits ?? 1)),
    }))],
  }, data);
}

/**
 * Bars over categories: labels[], series [{label, values, colour}]. Series share the slots, so
 * give each slot a value in one series only (null elsewhere), e.g. measured days + forecast day.
 */
export function barChart(container, { title, labels, series, yLabel, testid = null }) {
  const plot = frame(container, title, testid);
  const x = labels.map((_, i) => i);
  plot.dataset.points = String(finiteCount(series.map((s) => s.values)));
  return mount(plot, {
    scales: { x: { time: false, range: [-0.6, labels.length - 0.4] },
      y: { auto: true, range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1] } },
    axes: [
      { values: (u, splits) => splits.map((v) => (Number.isInteger(v) && labels[v] !== undefined ? labels[v] : "")),
        incrs: [1], rotate: labels.length > 8 ? -30 : 0, size: labels.length > 8 ? 80 : 40 },
      { label: yLabel, size: 70 },
    ],
    series: [{ value: (u, v) => (v === null || v === undefined ? "" : labels[v] ?? "") },
      ...series.map((s) => ({ label: s.label, fill: s.colour + "cc", stroke: s.colour, width: 1,
        paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false },
        value: (u, v) => (v === null || v === undefined ? "–" : v.toFixed(s.digits ?? 1)) }))],
  }, [x, ...series.map((s) => s.values)]);
}

/** Horizontal evidence bars in plain HTML: [{label, value 0..1}]. */
export function meterBars(items, testid = null) {
  return h("div", { class: "hbars", "data-testid": testid }, items.map((it) => h("div", { class: "hbar" },
    h("span", { class: "hbar-label" }, it.label),
    h("span", { class: "hbar-track" }, h("span", { class: "hbar-fill", style: { width: `${Math.round(100 * Math.max(0, Math.min(1, it.value)))}%` } })),
    h("span", { class: "hbar-value" }, it.value === null ? "–" : it.value.toFixed(2)))));
}
