// bastion dashboard: DOM helpers and formatting shared by app.js and charts.js.
// Every text that came from the API goes in through textContent (el's "text"), never as HTML.

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

export const pick = (obj, ...keys) => {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
};

export function duration(seconds) {
  if (seconds === undefined || seconds === null || Number.isNaN(Number(seconds))) return "–";
  let s = Math.max(0, Math.round(Number(seconds)));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = Number(n); let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// The API's timestamps: Unix seconds (a number, or digits in a string) or an ISO 8601 /
// RFC 3339 string. Both shapes are read, so the page follows whichever the daemon sends.
export function toDate(value) {
  if (value === undefined || value === null || value === "") return null;
  if (value instanceof Date) return value;
  if (typeof value === "string" && /^\d+(\.\d+)?$/.test(value)) value = Number(value);
  const d = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

// Milliseconds since the epoch, or NaN: for comparing timestamps of either shape.
export const msOf = (value) => { const d = toDate(value); return d ? d.getTime() : NaN; };

const pad = (n) => String(n).padStart(2, "0");

// Local time, with the date only when it is not today: "14:03:07", "2026-11-22 09:15:00".
export function when(value) {
  const d = toDate(value);
  if (!d) return "–";
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function timeEl(value) {
  const d = toDate(value);
  return el("time", { datetime: d ? d.toISOString() : null, text: when(value) });
}

// "3 h", "2 d", "40 min": a short age for chart labels.
export function age(seconds) {
  const s = Math.max(0, Number(seconds));
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}
