// bastion dashboard: the pictures, as inline SVG drawn from API data (no chart library).
//
// - drawTimeline: a service's states over the selected range as a coloured strip, restarts
//   marked above it, a time axis under it, a legend of the states shown, and a text summary
//   as the picture's accessible name.
// - drawSizeChart: bastion.db's file and WAL size over the last day (the daemon's samples).
// - drawBackupAges: each backup as a dot on an age axis (now on the right).
// - drawSeriesChart: a few of the metrics over the last hour (restarts per service, log lines
//   per second, the COMMIT p99), one line per series, from GET /v1/metrics/series.
//
// Each SVG is redrawn with a viewBox as wide as it is on screen, so text and markers keep
// their size at any width instead of being stretched.

import { age, bytes, duration, el, msOf, svgEl, toDate } from "./dom.js";

// Order of the legend, and how each state reads there.
const STATES = ["running", "starting", "unhealthy", "half_open", "stopping", "backoff", "open", "exited", "failed", "stopped"];
const RANGE_WORDS = { 600: "10 minutes", 3600: "hour", 86400: "day" };

export const rangeWords = (range) => RANGE_WORDS[range] || duration(range);
const label = (s) => String(s).replace("_", "-");

function widthOf(svg, fallback) {
  const w = Math.round(svg.getBoundingClientRect().width);
  return w > 0 ? w : fallback;
}

// A restart: the service starts again after running or failing (an automatic restart after
// its backoff, a half-open trial, an operator's restart), not its first start from STOPPED.
export const isRestart = (e) => (e.to === "starting" || e.to === "half_open") && Boolean(e.from) && e.from !== "stopped";

// How wide a label of the axes is drawn (11px, the page's font: .axis-text in app.css),
// measured on a canvas: it works for a picture drawn while its view is hidden.
let measure = null;
function textWidth(text) {
  if (!measure) {
    measure = document.createElement("canvas").getContext("2d");
    measure.font = `11px ${getComputedStyle(document.body).fontFamily}`;
  }
  return measure.measureText(text).width;
}

// A time axis from `span` ago (x0) to now (x1), with `ticks` steps, or fewer where the labels
// would overlap: on a phone the size chart's "24 h ago" ran into "18 h ago".
function timeAxis(svg, { x0, x1, y, span, endLabel = "now", ticks = 4, suffix = " ago" }) {
  const GAP = 6;  // px between two labels
  const labels = (n) => Array.from({ length: n + 1 }, (_, i) => {
    const x = x0 + ((x1 - x0) * i) / n;
    const anchor = i === 0 ? "start" : i === n ? "end" : "middle";
    const text = i === n ? endLabel : `${age(span * (1 - i / n))}${suffix}`;
    const w = textWidth(text);
    const left = anchor === "start" ? x : anchor === "end" ? x - w : x - w / 2;
    return { x, anchor, text, left, right: left + w };
  });
  let shown = labels(ticks);
  for (let n = ticks - 1; n >= 1 && shown.some((l, i) => i > 0 && shown[i - 1].right + GAP > l.left); n -= 1) {
    shown = labels(n);
  }
  svg.append(svgEl("line", { x1: x0, x2: x1, y1: y, y2: y, class: "axis-line" }));
  for (const { x, anchor, text } of shown) {
    svg.append(svgEl("line", { x1: x, x2: x, y1: y, y2: y + 4, class: "axis-line" }));
    svg.append(svgEl("text", { x, y: y + 15, "text-anchor": anchor, class: "axis-text" }, text));
  }
}

// events: [{id, at: Date, from, to, reason}] in journal order. Returns what was drawn.
export function drawTimeline(card, events, range) {
  const svg = card.querySelector(".timeline-svg");
  const name = card.dataset.service;
  const W = widthOf(svg, 600); const H = 56; const top = 12; const h = 22;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const end = Date.now(); const start = end - range * 1000;
  const x = (t) => Math.max(0, Math.min(W, ((t - start) / (end - start)) * W));
  svg.replaceChildren(svgEl("rect", { x: 0, y: top, width: W, height: h, class: "seg-none" }));

  const inRange = events.filter((e) => e.at.getTime() >= start);
  const before = events.filter((e) => e.at.getTime() < start).pop();
  const spent = new Map();  // state -> milliseconds in range
  let current = before ? before.to : null; let from = start;
  const segment = (state, t0, t1) => {
    if (!state) return;
    spent.set(state, (spent.get(state) || 0) + (t1 - t0));
    const rect = svgEl("rect", { x: x(t0), y: top, width: Math.max(1, x(t1) - x(t0)), height: h, class: `seg seg-${state}` });
    rect.append(svgEl("title", {}, `${label(state)} for ${duration((t1 - t0) / 1000)}`));
    svg.append(rect);
  };
  for (const e of inRange) {
    segment(current, from, e.at.getTime());
    current = e.to; from = e.at.getTime();
  }
  segment(current, from, end);

  let restarts = 0;
  for (const e of inRange) {
    const at = x(e.at.getTime());
    const text = `${e.at.toLocaleTimeString(undefined, { hour12: false })}: ${e.from ? `${label(e.from)} → ` : ""}${label(e.to)}${e.reason ? ` (${e.reason})` : ""}`;
    const tick = svgEl("line", { x1: at, x2: at, y1: top, y2: top + h, class: "tick" });
    tick.append(svgEl("title", {}, text));
    svg.append(tick);
    if (isRestart(e)) {
      restarts += 1;
      const mark = svgEl("path", { d: `M${at - 5},1 L${at + 5},1 L${at},10 Z`, class: "restart" });
      mark.append(svgEl("title", {}, `restart: ${text}`));
      svg.append(mark);
    }
  }
  timeAxis(svg, { x0: 0, x1: W, y: top + h + 2, span: range, ticks: range === 600 ? 2 : 4 });
  svg.dataset.events = String(inRange.length);
  svg.dataset.restarts = String(restarts);

  const shown = STATES.filter((s) => spent.has(s));
  const legend = card.querySelector(".timeline-legend");
  legend.replaceChildren(
    ...shown.map((s) => el("li", { "data-state": s }, el("span", { class: `swatch seg-${s}`, "aria-hidden": "true" }), label(s))),
    // Before the first change on record (a new home, or history past retention).
    ...(before ? [] : [el("li", {}, el("span", { class: "swatch seg-none", "aria-hidden": "true" }), "no record")]),
    el("li", { "data-restarts": String(restarts) }, el("span", { class: "swatch restart-mark", "aria-hidden": "true", text: "▼" }), `restart (${restarts})`));
  card.querySelector(".timeline-caption").textContent = `State over the last ${rangeWords(range)}`;

  const parts = shown.map((s) => `${label(s)} ${duration(spent.get(s) / 1000)}`);
  svg.setAttribute("aria-label", `State of ${name} over the last ${rangeWords(range)}: ${parts.length ? parts.join(", ") : "no state recorded"}; `
    + `${restarts} restart${restarts === 1 ? "" : "s"}, ${inRange.length} change${inRange.length === 1 ? "" : "s"}.`);
  return { restarts, changes: inRange.length };
}

// A round upper bound for the y axis in the unit its labels use (B, KiB, MiB, GiB):
// 1, 2 or 5 times a power of ten of that unit, so the labels read "2.0 MiB", not "1.9 MiB".
function niceMax(v) {
  if (!(v > 0)) return 1024;
  const unit = 1024 ** Math.min(3, Math.floor(Math.log(Math.max(1, v)) / Math.log(1024)));
  const r = v / unit; const p = 10 ** Math.floor(Math.log10(r));
  for (const m of [1, 2, 5, 10]) if (m * p >= r) return m * p * unit;
  return 10 * p * unit;
}

// samples: [{ts, size_bytes, wal_bytes}] oldest first; current: the status read now.
export function drawSizeChart(svg, samples, current, range = 86400) {
  const W = widthOf(svg, 600); const H = 180;
  const left = 70; const right = 10; const top = 10; const bottom = 26;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const end = Date.now(); const start = end - range * 1000;
  const pts = samples.map((s) => ({ t: msOf(s.ts), size: Number(s.size_bytes), wal: Number(s.wal_bytes) }))
    .filter((p) => p.t >= start && p.t <= end);
  if (current && current.size_bytes !== undefined) pts.push({ t: end, size: Number(current.size_bytes), wal: Number(current.wal_bytes) });
  const yMax = niceMax(Math.max(0, ...pts.map((p) => Math.max(p.size, p.wal))) * 1.05);
  const x = (t) => left + ((t - start) / (end - start)) * (W - left - right);
  const y = (v) => top + (1 - v / yMax) * (H - top - bottom);
  svg.replaceChildren();
  for (const f of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: left, x2: W - right, y1: y(yMax * f), y2: y(yMax * f), class: f ? "grid" : "axis-line" }));
    svg.append(svgEl("text", { x: left - 6, y: y(yMax * f) + 4, "text-anchor": "end", class: "axis-text" }, bytes(yMax * f)));
  }
  timeAxis(svg, { x0: left, x1: W - right, y: H - bottom, span: range });
  const line = (key, cls) => {
    if (!pts.length) return;
    // A step line: a size holds until the next sample says otherwise.
    let d = `M${x(pts[0].t)},${y(pts[0][key])}`;
    for (const p of pts.slice(1)) d += ` H${x(p.t)} V${y(p[key])}`;
    svg.append(svgEl("path", { d, class: `line ${cls}` }));
    // Dots while they are few enough to point at (each has its time and size on hover).
    for (const p of pts.length <= 60 ? pts : []) {
      const dot = svgEl("circle", { cx: x(p.t), cy: y(p[key]), r: 2.5, class: `dot ${cls}` });
      dot.append(svgEl("title", {}, `${toDate(p.t).toLocaleString()}: ${bytes(p[key])}`));
      svg.append(dot);
    }
  };
  line("size", "line-size");
  line("wal", "line-wal");
  svg.dataset.points = String(pts.length);
  const recorded = pts.length - (current ? 1 : 0);
  let text;
  if (!pts.length) text = "No size recorded yet.";
  else {
    const sizes = pts.map((p) => p.size); const wals = pts.map((p) => p.wal);
    text = `Database file ${bytes(sizes[0])} to ${bytes(sizes.at(-1))}, WAL between ${bytes(Math.min(...wals))} and ${bytes(Math.max(...wals))} over the last ${rangeWords(range)} (${recorded} sample${recorded === 1 ? "" : "s"}).`;
  }
  svg.setAttribute("aria-label", text);
  return recorded ? text : `${text} The daemon records a sample every 5 minutes; the chart fills in as it runs.`;
}

// backups: [{name, created_at, verified}] in any order.
export function drawBackupAges(svg, backups) {
  const W = widthOf(svg, 600); const H = 64;
  const left = 12; const right = 18; const axisY = 30;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const now = Date.now();
  const rows = backups.map((b) => ({ b, ageS: Math.max(0, (now - msOf(b.created_at)) / 1000) })).filter((r) => Number.isFinite(r.ageS));
  const oldest = Math.max(0, ...rows.map((r) => r.ageS));
  const span = Math.max(86400, oldest * 1.05);
  const x = (ageS) => W - right - (ageS / span) * (W - left - right);
  svg.replaceChildren();
  timeAxis(svg, { x0: left, x1: W - right, y: axisY, span, suffix: "" });
  for (const { b, ageS } of rows) {
    const ok = Boolean(b.verified);
    const dot = svgEl("circle", { cx: x(ageS), cy: axisY - 10, r: 6, class: ok ? "dot-ok" : "dot-bad" });
    dot.append(svgEl("title", {}, `${b.name}: ${age(ageS)} old, ${ok ? "verified" : "not verified"}`));
    svg.append(dot);
  }
  svg.dataset.backups = String(rows.length);
  const ages = rows.map((r) => r.ageS);
  const verified = rows.filter((r) => r.b.verified).length;
  const text = rows.length
    ? `${rows.length} backup${rows.length === 1 ? "" : "s"}: newest ${age(Math.min(...ages))} old, oldest ${age(oldest)} old; ${verified} verified.`
    : "No backups yet.";
  svg.setAttribute("aria-label", text);
  return text;
}

// A round upper bound for a plain number axis: 1, 2 or 5 times a power of ten.
function niceUp(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const SERIES_COLOURS = 6;

// figure: the <figure> holding the svg, its legend and its summary. points: [{t (ms), values:
// {name: number | null}}] oldest first; names: the series drawn (one colour each, in order).
// A null value (no interval before it, nothing committed in it) breaks its line. The summary
// -- title, latest value of each series, samples drawn -- is the picture's accessible name
// and the text under it. Returns the summary.
export function drawSeriesChart(figure, points, names, { title, format, window = 3600 }) {
  const svg = figure.querySelector("svg");
  const W = widthOf(svg, 300); const H = 120;
  const left = 48; const right = 8; const top = 8; const bottom = 22;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  // The x axis spans the samples there are, up to the window (a daemon started a few minutes
  // ago would otherwise draw everything in the last pixels of an hour), at least a minute.
  const end = Date.now();
  const first = Math.min(end, ...points.map((p) => p.t).filter((t) => t >= end - window * 1000));
  const span = Math.min(window, Math.max(60, Math.ceil((end - first) / 1000)));
  const start = end - span * 1000;
  const shown = points.filter((p) => p.t >= start && p.t <= end);
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const all = shown.flatMap((p) => names.map((n) => p.values[n]).filter(finite));
  const yMax = niceUp(Math.max(0, ...all) * 1.1);
  const x = (t) => left + ((t - start) / (end - start)) * (W - left - right);
  const y = (v) => top + (1 - v / yMax) * (H - top - bottom);
  svg.replaceChildren();
  for (const f of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: left, x2: W - right, y1: y(yMax * f), y2: y(yMax * f), class: f ? "grid" : "axis-line" }));
    svg.append(svgEl("text", { x: left - 5, y: y(yMax * f) + 4, "text-anchor": "end", class: "axis-text" }, format(yMax * f)));
  }
  timeAxis(svg, { x0: left, x1: W - right, y: H - bottom, span, ticks: 2 });
  const latest = [];
  names.forEach((name, i) => {
    const values = shown.map((p) => p.values[name]);
    let d = ""; let pen = false;
    shown.forEach((p, k) => {
      const v = values[k];
      if (!finite(v)) { pen = false; return; }
      d += `${pen ? " L" : " M"}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const path = svgEl("path", { d: d.trim() || "M0,0", class: `line series-${i % SERIES_COLOURS}`, "data-series": name });
    // The values drawn, oldest first ("" for a gap): what a test or a curious reader can check.
    path.setAttribute("data-values", values.map((v) => (finite(v) ? String(v) : "")).join(","));
    const last = [...values].reverse().find(finite);
    path.append(svgEl("title", {}, `${name}: ${last === undefined ? "no value yet" : format(last)} now`));
    svg.append(path);
    latest.push(`${name} ${last === undefined ? "no value yet" : format(last)}`);
  });
  const legend = figure.querySelector(".legend");
  if (legend) {
    legend.replaceChildren(...names.map((name, i) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch series series-${i % SERIES_COLOURS}`;
      swatch.setAttribute("aria-hidden", "true");
      li.append(swatch, document.createTextNode(name));
      return li;
    }));
  }
  svg.dataset.points = String(shown.length);
  const text = !shown.length || !names.length
    ? `${title}: nothing sampled yet.`
    : `${title}, latest: ${latest.join(", ")} (${shown.length} sample${shown.length === 1 ? "" : "s"} over the last ${rangeWords(span)}).`;
  svg.setAttribute("aria-label", text);
  const summary = figure.querySelector(".metric-summary");
  if (summary) summary.textContent = text;
  return text;
}
