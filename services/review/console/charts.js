// Line charts as inline SVG, drawn here (no library, nothing fetched from elsewhere). Each
// chart is a <figure>: its caption names the SVG (role="img"), and a data table under it
// carries the same numbers for screen readers and for copying.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// Each at least 4.5:1 against white (WCAG AA for text, and the lines are read like text).
const PALETTE = ["#1d4ed8", "#b45309", "#047857", "#b91c1c", "#6d28d9", "#0f766e", "#9d174d", "#374151"];
let chartCount = 0;

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

// "2026-12-02 07:00" (UTC): the charts and tables speak UTC, as the API does.
function utc(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 16);
}

// series: [{name, points: [{t: epoch ms, y: number or null}]}]; options: {format(y) -> text,
// yMax: fixed top of the axis (e.g. 1 for rates), tMin/tMax: the time axis (epoch ms),
// thresholds: [{y, label}] drawn as dashed lines, always inside the y range,
// gaps: [{t0, t1, label}] time ranges drawn as hatched bands, each saying why it has no
// value (the lines break there: give those points y null)}.
function lineChart(title, series, options) {
  const opts = options || {};
  const format = opts.format || ((v) => String(v));
  const id = `chart-${++chartCount}`;
  const figure = el("figure", null, "chart");
  figure.dataset.chart = title;
  const caption = el("figcaption", title);
  caption.id = `${id}-title`;
  figure.append(caption);

  const W = 640, H = 220, L = 70, R = 16, T = 12, B = 34;
  const values = series.flatMap((s) => s.points).filter((p) => p.y !== null && p.y !== undefined);
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p.t)))].sort((a, b) => a - b);
  // the time axis spans the window asked for (opts.tMin/tMax) or else the data
  const tMin = opts.tMin !== undefined ? opts.tMin : (times.length ? times[0] : 0);
  const tMax = opts.tMax !== undefined ? opts.tMax : (times.length ? times[times.length - 1] : 1);
  const thresholds = opts.thresholds || [];
  const yMax = opts.yMax || Math.max(0, ...values.map((p) => p.y), ...thresholds.map((h) => h.y * 1.1)) || 1;
  const x = (t) => L + (tMax > tMin ? (t - tMin) / (tMax - tMin) : 0.5) * (W - L - R);
  const y = (v) => T + (1 - v / yMax) * (H - T - B);

  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-labelledby": caption.id, class: "chart-svg", focusable: "false" });
  const axis = svgEl("g", { class: "axis" });
  axis.append(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B }), svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (const v of [0, yMax / 2, yMax]) {
    axis.append(svgEl("line", { x1: L - 4, y1: y(v), x2: W - R, y2: y(v), class: "grid" }));
    const label = svgEl("text", { x: L - 8, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = format(v);
    axis.append(label);
  }
  if (times.length || opts.tMin !== undefined) {
    const first = svgEl("text", { x: L, y: H - 10, "text-anchor": "start" });
    first.textContent = utc(tMin);
    const last = svgEl("text", { x: W - R, y: H - 10, "text-anchor": "end" });
    last.textContent = utc(tMax);
    axis.append(first, last);
  }
  thresholds.forEach((h, index) => {
    const line = svgEl("line", { x1: L, y1: y(h.y), x2: W - R, y2: y(h.y), class: "threshold", "data-threshold": h.y });
    // labels alternate between the right and the left end, so close lines stay readable
    const right = index % 2 === 0;
    const label = svgEl("text", { x: right ? W - R - 4 : L + 4, y: y(h.y) - 4,
      "text-anchor": right ? "end" : "start", class: "threshold-label" });
    label.textContent = h.label;
    axis.append(line, label);
  });
  svg.append(axis);
  for (const gap of opts.gaps || []) {
    const band = svgEl("rect", { x: x(gap.t0).toFixed(1), y: T, width: Math.max(2, x(gap.t1) - x(gap.t0)).toFixed(1),
      height: H - T - B, class: "gap-band", "data-gap": gap.label });
    const tip = svgEl("title");
    tip.textContent = `${utc(gap.t0)} to ${utc(gap.t1)}: ${gap.label}`;
    band.append(tip);
    svg.append(band);
  }

  series.forEach((s, index) => {
    const color = PALETTE[index % PALETTE.length];
    const group = svgEl("g", { class: "series", "data-series": s.name });
    let d = "";
    let pen = false;
    for (const p of s.points) {
      if (p.y === null || p.y === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.y).toFixed(1)} `;
      pen = true;
    }
    if (d) group.append(svgEl("path", { d: d.trim(), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of s.points) {
      if (p.y === null || p.y === undefined) continue;
      const dot = svgEl("circle", { cx: x(p.t).toFixed(1), cy: y(p.y).toFixed(1), r: 3, fill: color });
      const tip = svgEl("title");
      tip.textContent = `${s.name}, ${utc(p.t)}: ${format(p.y)}`;
      dot.append(tip);
      group.append(dot);
    }
    svg.append(group);
  });
  figure.append(svg);
  if (!values.length) figure.append(el("p", "No data in this window.", "muted empty-chart"));

  const legend = el("ul", null, "legend");
  series.forEach((s, index) => {
    const item = el("li");
    const swatch = svgEl("svg", { width: 12, height: 12, "aria-hidden": "true" });
    swatch.append(svgEl("rect", { width: 12, height: 12, fill: PALETTE[index % PALETTE.length] }));
    item.append(swatch, document.createTextNode(` ${s.name}`));
    legend.append(item);
  });
  figure.append(legend);

  // the data table alternative: one row per time, one column per series
  const details = el("details", null, "chart-data");
  details.append(el("summary", `Data table: ${title}`));
  const table = el("table");
  const head = el("tr");
  head.append(el("th", "Time (UTC)"));
  for (const s of series) head.append(el("th", s.name));
  for (const cell of head.children) cell.setAttribute("scope", "col");
  const thead = el("thead"); thead.append(head);
  const tbody = el("tbody");
  for (const t of times) {
    const row = el("tr");
    row.append(el("td", utc(t)));
    for (const s of series) {
      const p = s.points.find((q) => q.t === t);
      row.append(el("td", p && p.y !== null && p.y !== undefined ? format(p.y) : "–"));
    }
    tbody.append(row);
  }
  table.append(thead, tbody);
  details.append(table);
  figure.append(details);
  return figure;
}
