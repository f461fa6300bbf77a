// bastion dashboard: vanilla JS over the daemon's /v1 API. No framework, no build, and no
// request to anything but this origin (the page's Content-Security-Policy enforces it too).
// Every text that came from the API is inserted with textContent, never as HTML.
//
// Modules: dom.js (helpers, formatting), charts.js (the SVG pictures), logs.js (the log
// view), this file (HTTP, the link to the daemon, navigation and the other views).

import { $, bytes, duration, el, msOf, pick, timeEl, toDate, when } from "./dom.js";
import { drawBackupAges, drawSeriesChart, drawSizeChart, drawTimeline, rangeWords } from "./charts.js";
import { createLogs } from "./logs.js";

const ROUTES = {
  health: "/health",
  session: "/dashboard/session",
  logout: "/logout",
  status: "/v1/status",
  services: "/v1/services",
  service: (name) => `/v1/services/${encodeURIComponent(name)}`,
  logs: "/v1/logs",
  logStream: "/v1/logs/stream",
  eventStream: "/v1/events/stream",
  secrets: "/v1/secrets",
  secret: (name) => `/v1/secrets/${encodeURIComponent(name)}`,
  dbStatus: "/v1/db/status",
  dbMigrations: "/v1/db/migrations",
  dbSamples: "/v1/dashboard/db/samples",
  metricsSeries: "/v1/metrics/series",
  backups: "/v1/dashboard/backups",
  checks: "/v1/dashboard/checks",
  events: "/v1/events",
  activity: "/v1/activity",
};
const VIEWS = ["services", "logs", "secrets", "database", "activity"];
// A read that has not answered in this long means the daemon is not answering (a stopped
// or hung process); writes may legitimately wait for a service's stop grace period.
const READ_TIMEOUT_MS = 15000;
const WRITE_TIMEOUT_MS = 120000;
// Retries after the daemon is lost: 1 s, 2 s, 4 s ... at most 30 s apart.
const RETRY_MAX_S = 30;
const NOTICE_MS = { info: 8000, error: 20000 };

const state = {
  csrf: null, csrfHeader: "x-bastion-csrf", view: null, timer: null,
  range: 3600, boardSource: null, busy: new Set(), checking: false, backingUp: false,
  vaultProblem: null, signedOut: false, leaving: false,
  // Bumped by every view change and every load a view starts: a load that answers when it is
  // no longer the latest speaks for a view the reader has left, or for an earlier visit to
  // (or an older refresh of) the same view, whose newest load is still out.
  loads: 0,
  // Bumped when the page itself puts a newer answer on show than a load in flight may carry
  // (a check run, a backup taken, the secrets list read again): that load, answering later
  // with what it read before, must not put the older answer back.
  checks: 0, backups: 0, secretReads: 0,
  // Per service: the last transition before the timeline's range (what state it starts in).
  prior: new Map(),
  // The board's list has filled the log view's service filter at least once.
  servicesListed: false,
  // The newest secrets read (a read replaced by a newer one waits for it before it is done).
  secretsRead: null,
};
// How long a service's state-before-the-range is reused before it is asked for again.
const PRIOR_TTL_MS = 30000;

// --- HTTP ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.hint = body && body.hint;
  }
}

// The request never got an answer: connection refused or reset, or no answer in time.
class Unreachable extends Error {}

// Requests not yet answered (sign-out waits for them before it leaves the page).
const inflight = new Set();

function api(method, path, options = {}) {
  const request = send(method, path, options);
  inflight.add(request);
  const done = () => { inflight.delete(request); };
  request.then(done, done);
  return request;
}

async function send(method, path, { query, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (state.csrf) headers[state.csrfHeader] = state.csrf;
  }
  let response; let text;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: method === "GET" ? undefined : JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(method === "GET" ? READ_TIMEOUT_MS : WRITE_TIMEOUT_MS),
    });
    // Read the body even when there is none (204): fetch resolves at the headers, and a page
    // that navigates away before the load has finished aborts the request it just made.
    text = await response.text();
  } catch (err) {
    // The browser's own words ("Failed to fetch") say nothing useful: the link state does.
    // (A request cut off because the page is being left is not the daemon's fault.)
    if (!state.leaving) link.lost();
    throw new Unreachable(String(err && err.name));
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const items = (data) => (Array.isArray(data) ? data : (data && (data.items || data.services || data.secrets || data.backups)) || []);

// --- controls and notices -----------------------------------------------------------------

// Every control that needs the daemon carries data-needs-daemon; its own reason to be off
// (a stopped service's Stop button, a backup already running) is data-enabled="false".
// While the daemon is unreachable or the session is gone, all of them are off.
const blocked = () => link.down || state.signedOut;

function setEnabled(node, enabled) {
  node.dataset.enabled = String(Boolean(enabled));
  node.disabled = blocked() || !enabled;
}

function syncControls() {
  for (const node of document.querySelectorAll("[data-needs-daemon]")) {
    node.disabled = blocked() || node.dataset.enabled === "false";
  }
}

let noticeTimer = null;
function notify(message, isError = false) {
  const box = $("#notice");
  clearTimeout(noticeTimer);
  $("#notice-text").textContent = message;
  box.classList.toggle("error", isError);
  box.hidden = !message;
  // Notices go away by themselves (errors stay longer); Dismiss closes one at once.
  if (message) noticeTimer = setTimeout(() => notify(""), isError ? NOTICE_MS.error : NOTICE_MS.info);
}

function signedOut(message) {
  state.signedOut = true;
  stopTimer(); logs.stop(); stopBoardStream();
  markUnknown("signed out");
  banner(message, "");
  syncControls();
}

function reportError(err) {
  if (err instanceof Unreachable) return;  // the banner says it, once, with what happens next
  if (err instanceof ApiError && err.status === 401) {
    signedOut("Your session has ended. Run `bastion dashboard` on this machine for a new sign-in link.");
    return;
  }
  const hint = err.hint ? ` ${err.hint}` : "";
  notify(`${String(err.message).replace(/\.$/, "")}.${hint}`, true);
}

function confirmAction(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    // The safe choice has the focus: Enter right after opening cancels.
    $("#confirm-cancel").focus();
  });
}

function banner(text, retry) {
  // Rewriting the same words would make a screen reader announce them again.
  if ($("#link-text").textContent !== text) $("#link-text").textContent = text;
  $("#link-retry").textContent = retry;
  $("#link-retry-now").hidden = !retry;
  $("#link-banner").hidden = !text;
}

// --- the link to the daemon ---------------------------------------------------------------

// When a request gets no answer, the page says so once, turns every action off, shows no
// state it can no longer vouch for, and asks /health again with a growing delay. When the
// daemon answers, the session is checked (a restarted daemon has signed everybody out) and
// the current view is loaded afresh.
const link = {
  down: false, attempt: 0, timer: null, tick: null, since: null, nextAt: 0,

  lost() {
    if (this.down || state.signedOut) return;
    this.down = true; this.attempt = 0; this.since = new Date();
    document.body.dataset.daemon = "unreachable";
    stopTimer(); logs.stop(); stopBoardStream();
    markUnknown("daemon unreachable");
    $("#daemon-info").textContent = "daemon unreachable";
    syncControls();
    this.schedule();
  },

  schedule() {
    const delay = Math.min(RETRY_MAX_S, 2 ** this.attempt);
    this.attempt += 1;
    this.nextAt = Date.now() + delay * 1000;
    $("#link-banner").dataset.retryS = String(delay);
    $("#link-banner").dataset.attempt = String(this.attempt);
    clearTimeout(this.timer); clearInterval(this.tick);
    this.timer = setTimeout(() => this.probe(), delay * 1000);
    this.render();
    this.tick = setInterval(() => this.render(), 1000);
  },

  render() {
    const left = Math.max(0, Math.ceil((this.nextAt - Date.now()) / 1000));
    banner(`The bastion daemon at ${location.host} is not answering (since ${when(this.since)}): it was stopped or is not responding. `
      + "Actions are off and service states are unknown until it is back; start it again with `bastion serve`.",
    left ? `Trying again in ${left} s (attempt ${this.attempt}).` : "Trying again now…");
  },

  async probe() {
    clearTimeout(this.timer); clearInterval(this.tick);
    this.render();
    try {
      const r = await fetch(ROUTES.health, { cache: "no-store", signal: AbortSignal.timeout(5000) });
      await r.text();
      if (!r.ok) throw new Error(String(r.status));
    } catch {
      this.schedule();
      return;
    }
    this.restored();
  },

  async restored() {
    let session;
    try {
      session = await fetch(ROUTES.session, { cache: "no-store", credentials: "same-origin", signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
    } catch { this.schedule(); return; }
    this.down = false;
    delete document.body.dataset.daemon;
    if (session.status === 401) {
      await session.text();
      signedOut("The daemon is back, but it was restarted, which ends every sign-in. Run `bastion dashboard` on this machine for a new link.");
      return;
    }
    const info = await session.json().catch(() => ({}));
    state.csrf = info.csrf_token || state.csrf;
    banner("", "");
    syncControls();
    loadDaemonInfo();
    const view = state.view; state.view = null;
    show(view);
    notify(`The daemon is answering again (it was unreachable for ${duration((Date.now() - this.since) / 1000)}).`);
  },
};

// Streams report errors but not why; one /health decides whether the daemon is gone.
async function checkLink() {
  if (link.down) return;
  try {
    const r = await fetch(ROUTES.health, { cache: "no-store", signal: AbortSignal.timeout(5000) });
    await r.text();
  } catch { link.lost(); }
}

// --- services -----------------------------------------------------------------------------

const stateName = (s) => String(s || "unknown").toLowerCase();
const cardOf = (name) => $(`#services li[data-service="${CSS.escape(name)}"]`);

function setBadge(card, st, reason) {
  const badge = card.querySelector(".state");
  badge.dataset.state = st;
  badge.textContent = st.replace("_", "-");
  card.dataset.state = st;
  card.querySelector(".reason").textContent = reason;
}

// Nothing on show may claim a state the page can no longer see.
function markUnknown(why) {
  for (const card of document.querySelectorAll("#services li[data-service]")) {
    setBadge(card, "unknown", `state unknown: ${why}`);
    card.querySelector(".uptime").textContent = "–";
    card.querySelector(".pid").textContent = "–";
    card.querySelector(".probes").replaceChildren();
  }
}

// The log view's service filter offers every service the board has listed.
function addServiceOptions(names) {
  const select = $("#log-service");
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) select.append(el("option", { value: name, text: name }));
  }
}

// A page opened at #logs has not loaded the board: the filter would offer only "all" until
// the reader visited it. The log view reads the list once itself, before it shows its lines.
async function listServicesForLogs() {
  if (state.servicesListed) return;
  try {
    addServiceOptions(items(await api("GET", ROUTES.services)).map((svc) => pick(svc, "name")));
    state.servicesListed = true;
  } catch {
    // The log view's own reads report what is wrong; the board's next load fills the filter.
  }
}

// Each view's loader takes latest(): false once a newer load of the view has started or the
// reader has left it. A load that is no longer the latest writes nothing: an earlier visit's
// load answering after this visit's would put older states and lists back on show.
async function loadServices(latest) {
  const data = await api("GET", ROUTES.services);
  if (!latest()) return;
  const list = items(data);
  const host = $("#services");
  $("#services-empty").hidden = list.length > 0;
  const seen = new Set();
  for (const svc of list) {
    const name = pick(svc, "name");
    seen.add(name);
    let card = cardOf(name);
    if (!card) {
      card = $("#service-card").content.firstElementChild.cloneNode(true);
      card.dataset.service = name;
      card.querySelector(".service-name").textContent = name;
      for (const button of card.querySelectorAll("button[data-action]")) {
        button.setAttribute("aria-label", `${button.textContent} ${name}`);
        button.addEventListener("click", () => serviceAction(name, button.dataset.action));
      }
      host.append(card);
    }
    renderService(card, svc);
  }
  addServiceOptions(seen);
  state.servicesListed = true;
  for (const card of [...host.children]) if (!seen.has(card.dataset.service)) card.remove();
  await Promise.all([
    ...list.map((svc) => loadTimeline(pick(svc, "name")).catch(() => {})),
    loadMetrics().catch(() => {}),
  ]);
}

// The pictures over the last hour: GET /v1/metrics/series, at most every few seconds (the
// daemon samples every [api] metrics_sample_s; the board itself refreshes every second).
const METRICS_EVERY_MS = 5000;
const formatCount = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
const formatRate = (v) => `${v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)}/s`;
const formatSeconds = (v) => (v === 0 ? "0 ms" : v < 0.001 ? `${(v * 1e6).toFixed(0)} µs` : v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms` : `${v.toFixed(2)} s`);

async function loadMetrics() {
  if (state.metricsOff || Date.now() - (state.metricsAt || 0) < METRICS_EVERY_MS) return;
  state.metricsAt = Date.now();
  let series;
  try {
    series = await api("GET", ROUTES.metricsSeries);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {  // [api] metrics = false: no route
      state.metricsOff = true;
      $("#metrics-off").hidden = false;
      $(".metric-charts").hidden = true;
      return;
    }
    throw err;
  }
  const points = (series.points || []).map((p) => ({ t: msOf(p.ts), p }));
  const names = (key) => [...new Set(points.flatMap(({ p }) => Object.keys(p[key] || {})))].sort();
  const seriesOf = (key) => points.map(({ t, p }) => ({ t, values: p[key] || {} }));
  const span = Number(series.window_s) || 3600;
  drawSeriesChart($("#metric-restarts-figure"), seriesOf("restarts"), names("restarts"), { title: "Restarts per service", format: formatCount, window: span });
  drawSeriesChart($("#metric-lines-figure"), seriesOf("log_lines_per_s"), names("log_lines_per_s"), { title: "Log lines per second", format: formatRate, window: span });
  drawSeriesChart($("#metric-commit-figure"), points.map(({ t, p }) => ({ t, values: { "COMMIT p99": p.commit_p99_s } })), ["COMMIT p99"], { title: "Commit latency p99", format: formatSeconds, window: span });
}

function renderService(card, svc) {
  const st = stateName(pick(svc, "state", "status"));
  const reason = pick(svc, "reason");
  setBadge(card, st, reason ? `${st.replace("_", "-")}: ${reason}` : "");
  const running = ["running", "starting", "unhealthy", "half_open"].includes(st);
  // ``since`` is when the service entered its current state: for RUNNING, its uptime.
  const since = toDate(pick(svc, "started_at", "since"));
  if (since) card.dataset.since = String(since.getTime());
  const uptime = pick(svc, "uptime_s") ?? (since ? (Date.now() - since) / 1000 : undefined);
  card.querySelector(".uptime").textContent = running ? duration(uptime) : "–";
  const restarts = pick(svc, "restarts_in_window", "restarts", "restart_count");
  card.querySelector(".restarts").textContent = restarts === undefined ? "–" : String(restarts);
  card.querySelector(".pid").textContent = pick(svc, "pid") ?? "–";
  const breaker = pick(svc, "breaker") ?? "closed";
  const bstate = stateName(typeof breaker === "string" ? breaker : pick(breaker, "state"));
  let btext = bstate.replace("_", "-");
  const nextStart = toDate(pick(svc, "next_start_at") ?? pick(breaker, "open_until", "half_open_at"));
  if (bstate === "open" && nextStart) btext += ` (half-open in ${duration((nextStart - Date.now()) / 1000)})`;
  else if (st === "backoff" && nextStart) btext += ` (retry in ${duration((nextStart - Date.now()) / 1000)})`;
  card.querySelector(".breaker").textContent = btext;
  const probes = card.querySelector(".probes");
  probes.replaceChildren();
  const ready = pick(svc, "ready");
  if (ready !== undefined) {
    probes.append(el("li", { class: ready ? "probe-ok" : "probe-bad", text: `ready: ${ready ? "ok" : "not ready"}` }));
  }
  for (const p of pick(svc, "health", "probes") || []) {
    const ok = pick(p, "ok", "healthy");
    const latency = pick(p, "latency_ms");
    const role = pick(p, "role");
    const label = `${role ? `${role} ` : ""}${pick(p, "kind", "name", "probe") || "probe"}: ${ok === undefined || ok === null ? "not run yet" : ok ? "ok" : "failing"}`;
    const at = pick(p, "at", "checked_at");
    probes.append(el("li", { class: ok ? "probe-ok" : ok === false ? "probe-bad" : "", text: `${label}${latency !== undefined ? ` · ${Number(latency).toFixed(1)} ms` : ""}${at ? ` · ${when(at)}` : ""}` }));
  }
  const busy = state.busy.has(pick(svc, "name"));
  setEnabled(card.querySelector('[data-action="start"]'), !(busy || running || st === "stopping"));
  setEnabled(card.querySelector('[data-action="stop"]'), !(busy || st === "stopped"));
  setEnabled(card.querySelector('[data-action="restart"]'), !busy);
}

// Live board: every transition the supervisor journals arrives over SSE and is shown at
// once (so even a sub-second STOPPING -> STARTING is seen); the poll then fills in the rest.
function startBoardStream() {
  if (state.boardSource || blocked()) return;
  const url = new URL(ROUTES.eventStream, location.origin);
  url.searchParams.set("kind", "service.transition");
  const source = new EventSource(url);
  state.boardSource = source;
  source.addEventListener("event", (msg) => {
    let ev; try { ev = JSON.parse(msg.data); } catch { return; }
    const card = cardOf(ev.subject);
    const to = ev.data && ev.data.to;
    if (!card || !to || blocked()) return;
    // The poll reads the supervisor's memory, the stream its journal: an event older than
    // the state on show is stale and must not move the badge backwards.
    const at = msOf(ev.ts);
    if (at < Number(card.dataset.since || 0)) return;
    card.dataset.since = String(at);
    setBadge(card, to, ev.data.reason ? `${to.replace("_", "-")}: ${ev.data.reason}` : "");
    clearTimeout(state.boardKick);
    state.boardKick = setTimeout(refresh, 150);
  });
  source.onerror = () => { checkLink(); };
}

function stopBoardStream() {
  if (state.boardSource) { state.boardSource.close(); state.boardSource = null; }
}

async function serviceAction(name, action) {
  if (action === "stop" && !(await confirmAction(`Stop ${name}? It stays stopped until started again.`))) return;
  state.busy.add(name);
  try {
    await api("POST", `${ROUTES.service(name)}/${action}`);
    notify(`${action} requested for ${name}.`);
  } catch (err) {
    reportError(err);
  } finally {
    state.busy.delete(name);
    if (!blocked()) refresh();
  }
}

function transitionOf(ev) {
  const data = pick(ev, "data", "detail", "payload") || {};
  const to = stateName(pick(ev, "to", "to_state", "state") ?? pick(data, "to", "to_state", "state"));
  const from = pick(ev, "from", "from_state") ?? pick(data, "from", "from_state");
  const at = toDate(pick(ev, "at", "ts", "created_at", "time"));
  return { id: Number(pick(ev, "id") ?? 0), to, from: from ? stateName(from) : null, at, reason: pick(ev, "reason") ?? pick(data, "reason") };
}

async function loadTimeline(name) {
  const range = state.range;
  const rangeStart = Date.now() - range * 1000;
  // The state the range starts in (reused for a while), then every change since it was read:
  // the query starts where that answer ended, so no change falls between the two.
  const prior = await priorState(name, rangeStart / 1000);
  const data = await api("GET", ROUTES.events, {
    query: { kind: "service.transition", subject: name, since: prior.until, order: "desc", limit: 500 },
  });
  const events = items(data).map(transitionOf).filter((e) => e.at && e.to !== "unknown")
    // Event ids follow the order the supervisor journaled the transitions in.
    .sort((a, b) => a.id - b.id || a.at - b.at);
  // Another range chosen while this was read: the strip is the new range's load's to draw
  // (this one would count the changes since the old range's start under the new range's name).
  if (state.range !== range) return;
  const card = cardOf(name);
  if (!card) return;
  drawTimeline(card, [...prior.events, ...events], range);
  const inRange = events.filter((e) => e.at.getTime() >= rangeStart);
  const last = inRange.slice(-8).reverse();  // newest first: the latest change is the visible one
  const list = card.querySelector(".transitions");
  list.dataset.count = String(inRange.length);
  list.replaceChildren(...last.map((e) => el("li", { "data-to": e.to, title: e.reason || null }, timeEl(e.at), ` ${e.to.replace("_", "-")}`)));
}

// The state a service was in when the range starts: the newest transition before it. Without
// it a service that has run steadily for longer than the range would show an empty strip.
async function priorState(name, until) {
  const key = `${name}\u0000${state.range}`;
  const cached = state.prior.get(key);
  if (cached && Date.now() - cached.at < PRIOR_TTL_MS) return cached;
  const data = await api("GET", ROUTES.events, {
    query: { kind: "service.transition", subject: name, until, order: "desc", limit: 1 },
  });
  const entry = { at: Date.now(), until, events: items(data).map(transitionOf).filter((e) => e.at) };
  state.prior.set(key, entry);
  return entry;
}

// --- secrets ------------------------------------------------------------------------------

// Which services reference which secret names (the names injected at their last start).
async function declaredSecrets() {
  const users = new Map();
  const services = items(await api("GET", ROUTES.services).catch(() => []));
  for (const svc of services) {
    for (const name of pick(svc, "secret_names") || []) {
      if (!users.has(name)) users.set(name, []);
      users.get(name).push(svc.name);
    }
  }
  return users;
}

function secretRow(name, scope, meta, flags) {
  const del = el("button", { type: "button", class: "danger", "aria-label": `Delete secret ${name}`, text: "Delete", "data-needs-daemon": true });
  setEnabled(del, Boolean(meta));
  del.addEventListener("click", () => deleteSecret(name, scope));
  const cell = (label, text) => el("td", { "data-label": label, text });
  return el("tr", { "data-secret": name },
    el("th", { scope: "row", "data-label": "Name", text: name }), cell("Scope", scope),
    cell("Backend", meta ? meta.backend : "–"),
    cell("Updated", meta ? when(meta.updated_at) : "–"),
    cell("Last used", meta ? when(meta.last_used_at) : "–"),
    el("td", { "data-label": "Status" }, ...flags.map(([text, bad]) => el("span", { class: `flag${bad ? " bad" : ""}`, text }))),
    el("td", { "data-label": "" }, del));
}

// Whether values can be stored at all, said before anyone types one (a keychain that is
// missing or locked, a file key that is not set): the problem, its fix, and a form that
// does not pretend to work.
function renderVaultStatus(status) {
  $("#secrets-backend").textContent = `Backend: ${status.backend} (${status.why}); ${status.count} stored in scope ${status.scope}.`;
  const problem = status.available === false ? (status.problem || { message: "the vault backend is unavailable", hint: "" }) : null;
  state.vaultProblem = problem;
  const box = $("#secrets-problem");
  box.hidden = !problem;
  if (problem) {
    $("#secrets-problem-text").textContent = `${String(problem.message).replace(/\.$/, "")}.`;
    $("#secrets-problem-hint").textContent = problem.hint || "See docs/errors.md.";
  }
  const form = $("#secret-form");
  setEnabled(form.elements.value, !problem);
  setEnabled(form.querySelector("button[type=submit]"), !problem);
}

// The secrets list counts its reads itself (it is also read again after a save or a delete):
// only the latest read started writes, whichever view or action started it.
function loadSecrets() {
  state.secretReads += 1;
  const mine = state.secretReads;
  const read = readSecrets(mine);
  state.secretsRead = read;
  return read;
}

async function readSecrets(mine) {
  const [page, status, users] = await Promise.all([
    api("GET", ROUTES.secrets, { query: { limit: 500 } }),
    api("GET", `${ROUTES.secrets}/status`),
    declaredSecrets(),
  ]);
  // A later read (after a secret was stored or deleted) has the list as it is now: this one
  // is done when that one is on screen (the view is not loaded before; its errors are its
  // caller's to report).
  if (state.secretReads !== mine) {
    await state.secretsRead.catch(() => {});
    return;
  }
  renderVaultStatus(status);
  const rows = items(page);
  const stored = new Set(rows.map((m) => m.name));
  const out = rows.map((m) => {
    const by = users.get(m.name);
    const flags = [["stored", false], ...(by ? [[`used by ${by.join(", ")}`, false]] : [])];
    return secretRow(m.name, m.scope, m, flags);
  });
  for (const [name, by] of users) {
    if (!stored.has(name)) out.push(secretRow(name, "global", null, [["missing", true], [`needed by ${by.join(", ")}`, false]]));
  }
  $("#secrets-table tbody").replaceChildren(...(out.length ? out : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No secrets stored yet." }))]));
}

async function saveSecret(event) {
  event.preventDefault();
  const form = event.target;
  const name = form.elements.name.value.trim();
  const scope = form.elements.scope.value.trim() || "global";
  const value = form.elements.value.value;
  // The value leaves the page once, in this request body, and is forgotten at once.
  form.elements.value.value = "";
  try {
    await api("PUT", ROUTES.secret(name), { body: { value, scope } });
    notify(`Stored secret ${name}.`);
    await loadSecrets();
  } catch (err) {
    reportError(err);
  }
}

async function deleteSecret(name, scope) {
  if (!(await confirmAction(`Delete secret ${name} (${scope})? Services that use it will fail to start.`))) return;
  try {
    await api("DELETE", ROUTES.secret(name), { query: { scope } });
    notify(`Deleted secret ${name}.`);
    await loadSecrets();
  } catch (err) {
    reportError(err);
  }
}

// --- database -----------------------------------------------------------------------------

async function loadDatabase(latest) {
  const checks = state.checks; const backups = state.backups;
  const since = Date.now() / 1000 - 86400;
  const [status, migrations, backupList, events, checkEvents, samples] = await Promise.all([
    api("GET", ROUTES.dbStatus),
    api("GET", ROUTES.dbMigrations).catch(() => []),
    api("GET", ROUTES.backups).catch(() => []),
    api("GET", ROUTES.events, { query: { limit: 100 } }).catch(() => []),
    api("GET", ROUTES.events, { query: { kind: "db.checked", limit: 1 } }).catch(() => []),
    api("GET", ROUTES.dbSamples, { query: { since } }).catch(() => []),
  ]);
  if (!latest()) return;
  const last = items(checkEvents)[0];
  if (last && !state.checking && state.checks === checks) {
    const d = last.data || {};
    $("#db-check").textContent = d.ok
      ? `Last ${d.kind} check: ok (${when(last.ts)}).`
      : `Last ${d.kind} check found ${d.problems} problem(s) (${when(last.ts)}). Run \`bastion db check\` for details.`;
    $("#db-check").dataset.ok = String(Boolean(d.ok));
  }
  const posture = status.posture || {};
  const facts = [
    ["Journal", posture.journal_mode], ["Synchronous", posture.synchronous],
    ["Foreign keys", posture.foreign_keys === undefined ? undefined : posture.foreign_keys ? "on" : "off"],
    ["Busy timeout", posture.busy_timeout_ms !== undefined ? `${posture.busy_timeout_ms} ms` : undefined],
    ["Size", bytes(status.size_bytes)], ["WAL size", bytes(status.wal_bytes)],
    ["Pages", status.page_count], ["Free pages", status.freelist_count],
    ["SQLite", status.sqlite_version],
  ];
  $("#db-facts").replaceChildren(...facts.filter(([, v]) => v !== undefined).map(([k, v]) =>
    el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) }))));
  $("#db-size-summary").textContent = drawSizeChart($("#db-size-chart"), items(samples), status);
  $("#migrations-table tbody").replaceChildren(...items(migrations).map((m) =>
    el("tr", {}, el("td", { text: m.namespace }), el("td", { text: m.id }), el("td", { text: when(m.applied_at) }))));
  if (state.backups === backups) renderBackups(backupList);
  // Store events: backups, migrations, quarantines, restores (service transitions live on the
  // board, bastion.toml's edits in the banner and on the activity view).
  const evs = items(events).filter((e) => !/^(service|config)\./.test(String(e.kind))).slice(0, 20);
  $("#db-events").replaceChildren(...(evs.length ? evs.map(feedItem) : [el("li", { class: "muted", text: "No quarantines or restores recorded." })]));
}

function renderBackups(backups) {
  const rows = items(backups);
  $("#backup-ages-summary").textContent = drawBackupAges($("#backup-ages-chart"), rows.map((b) => ({
    name: pick(b, "name", "file"), created_at: pick(b, "created_at", "created", "taken_at"), verified: pick(b, "verified", "ok"),
  })));
  $("#backups-table tbody").replaceChildren(...(rows.length ? rows.map((b) => {
    const verified = pick(b, "verified", "ok");
    const name = pick(b, "name", "file") || String(pick(b, "path") || "").split("/").pop();
    return el("tr", { "data-backup": name },
      el("td", { "data-label": "Backup" }, el("code", { text: name })),
      el("td", { "data-label": "Created", class: "nowrap", text: when(pick(b, "created_at", "created", "taken_at")) }),
      el("td", { "data-label": "Size", class: "nowrap", text: bytes(pick(b, "size_bytes", "size")) }),
      el("td", { "data-label": "Verified", class: verified ? "verified-yes" : "verified-no", text: verified ? "verified" : `not verified${pick(b, "problem", "error") ? `: ${pick(b, "problem", "error")}` : ""}` }));
  }) : [el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No backups yet." }))]));
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function backupNow() {
  const button = $("#backup-now"); const progress = $("#backup-progress");
  setEnabled(button, false); progress.hidden = false;
  progress.removeAttribute("value");  // indeterminate until the first step is reported
  notify("Backing up…");
  try {
    let job = await api("POST", ROUTES.backups);
    while (job.state === "running") {
      await sleep(250);
      job = await api("GET", `${ROUTES.backups}/job`);
      if (job.total_pages) { progress.max = job.total_pages; progress.value = job.done_pages; }
    }
    if (job.state === "failed") throw new ApiError(500, job.error);
    notify(`Backup ${job.backup.name} written and verified.`);
    const list = await api("GET", ROUTES.backups);
    state.backups += 1;
    renderBackups(list);
  } catch (err) {
    reportError(err);
  } finally {
    setEnabled(button, true); progress.hidden = true;
  }
}

async function runCheck() {
  const out = $("#db-check");
  state.checking = true;
  setEnabled($("#db-check-run"), false);
  out.textContent = "Checking…";
  delete out.dataset.ok; // the last answer no longer stands while this one runs
  try {
    const r = await api("POST", ROUTES.checks, { body: { kind: "quick" } });
    out.dataset.ok = String(r.ok);
    out.textContent = r.ok ? `Last quick check: ok (${when(Date.now())}).` : `quick_check found ${r.problems.length} problem(s): ${r.problems.slice(0, 3).join("; ")}`;
  } catch (err) {
    out.textContent = err instanceof Unreachable ? "Check not run: the daemon is unreachable." : "Check failed.";
    reportError(err);
  } finally {
    // A database load that read the last check before this answer must not show that one.
    state.checking = false; state.checks += 1;
    setEnabled($("#db-check-run"), true);
  }
}

// --- activity -----------------------------------------------------------------------------

function feedItem(a) {
  const what = pick(a, "action", "kind", "event") || "event";
  const subject = pick(a, "subject", "target", "service", "name");
  const actor = pick(a, "actor", "who");
  return el("li", { "data-actor": actor || null, "data-action": what }, timeEl(pick(a, "at", "ts", "created_at")),
    `${what}${subject ? ` · ${subject}` : ""}${actor ? ` · by ${actor}` : ""}`);
}

async function loadActivity(latest) {
  const [activity, events] = await Promise.all([
    api("GET", ROUTES.activity, { query: { limit: 100 } }),
    api("GET", ROUTES.events, { query: { limit: 100 } }),
  ]);
  if (!latest()) return;
  const rows = items(activity);
  $("#activity").replaceChildren(...(rows.length ? rows.map(feedItem) : [el("li", { class: "muted", text: "No one has changed anything yet." })]));
  const evs = items(events);
  $("#events").replaceChildren(...(evs.length ? evs.map(eventItem) : [el("li", { class: "muted", text: "No events yet." })]));
}

function eventItem(e) {
  const data = e.data || {};
  let text = `${e.kind}${e.subject ? ` · ${e.subject}` : ""}`;
  if (e.kind === "service.transition") text = `${e.subject}: ${data.from ? `${data.from} → ` : ""}${data.to}${data.reason ? ` (${data.reason})` : ""}`;
  else if (e.kind === "config.invalid") text = `${e.subject} is not valid (the daemon keeps the values it started with; its next start would refuse the file): ${configError(data).message}`;
  else if (e.kind === "config.changed") text = `${e.subject} changed${data.version !== undefined ? ` (version ${data.version})` : ""}: applies at the next start`;
  return el("li", { "data-kind": e.kind }, timeEl(e.ts), text);
}

// --- bastion.toml -------------------------------------------------------------------------

// The daemon says each edit of bastion.toml it sees as an event (subject bastion.toml): the
// newest decides. config.invalid puts the banner up on every view; a later config.changed
// (the file was fixed, or rolled back) takes it down. Read with the header's status, on its
// timer: no timer of its own.
const CONFIG_SUBJECT = "bastion.toml";

const configError = (data) => {
  const error = (data && data.error) || {};
  return { message: String(error.message || "the file does not load").replace(/\.$/, ""), hint: error.hint || "" };
};

function renderConfig(events, startedAt) {
  const last = items(events).find((e) => String(e.kind).startsWith("config."));
  // An invalid edit from before the daemon started is not what it runs on: it started since,
  // so the file loaded then (a daemon refuses to start on a file that does not).
  const invalid = last && last.kind === "config.invalid" && !(msOf(last.ts) < msOf(startedAt)) ? last : null;
  const box = $("#config-banner");
  if (invalid) {
    const { message, hint } = configError(invalid.data);
    // Rewriting the same words would make a screen reader announce them again.
    if ($("#config-error").textContent !== `${message}.`) $("#config-error").textContent = `${message}.`;
    $("#config-hint").textContent = hint;
  }
  box.hidden = !invalid;
}

// --- navigation and refresh ---------------------------------------------------------------

// The log view's latest entry (its first page on screen) marks it loaded, if it is still shown.
const logsEntered = () => { if (state.view === "logs") document.body.dataset.loaded = "logs"; };
const logs = createLogs({ api, routes: ROUTES, items, reportError, checkLink, setEnabled, blocked, isUnreachable: (err) => err instanceof Unreachable, entered: logsEntered });
const LOADERS = { services: loadServices, secrets: loadSecrets, database: loadDatabase, activity: loadActivity, logs: null };
const REFRESH_MS = { services: 1000, database: 5000, activity: 3000, secrets: 10000 };

function stopTimer() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

async function refresh() {
  stopTimer();
  const view = state.view; const load = LOADERS[view];
  if (!load || blocked()) return;
  state.loads += 1;
  const mine = state.loads;
  // Only the latest load marks the view loaded and starts the next timer: one still in flight
  // when another view was chosen (or the same view chosen again, or a newer refresh started)
  // would mark a view the reader has left, or this visit's view before its own load answered,
  // and leave a second timer running.
  const latest = () => state.loads === mine && state.view === view;
  try {
    await load(latest);
    if (latest()) document.body.dataset.loaded = view;
  } catch (err) {
    reportError(err);
    if (blocked()) return;
  }
  if (latest() && !blocked() && !state.leaving) state.timer = setTimeout(refresh, REFRESH_MS[view]);
}

function show(view) {
  if (!VIEWS.includes(view)) view = "services";
  if (state.view === view) return;
  state.view = view;
  state.loads += 1;
  notify("");
  delete document.body.dataset.loaded;
  for (const panel of document.querySelectorAll("[data-view-panel]")) panel.hidden = panel.dataset.viewPanel !== view;
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (view === "services") startBoardStream(); else stopBoardStream();
  if (view === "logs") {
    stopTimer();
    if (!blocked()) listServicesForLogs().then(() => { if (state.view === "logs" && !blocked()) logs.enter(); });
  } else { logs.stop(); refresh(); }
}

async function loadDaemonInfo() {
  if (blocked() || state.leaving) return;
  try {
    const [s, config] = await Promise.all([
      api("GET", ROUTES.status),
      // A read that fails leaves the banner as it was: the status says what is wrong.
      api("GET", ROUTES.events, { query: { subject: CONFIG_SUBJECT, limit: 10 } }).catch(() => null),
    ]);
    $("#daemon-info").textContent = `v${s.version} · pid ${s.pid} · port ${s.port} · up ${duration(s.uptime_s)}`;
    if (config) renderConfig(config, s.started_at);
  } catch (err) { reportError(err); }
}

async function start() {
  try {
    const session = await api("GET", ROUTES.session);
    state.csrf = session.csrf_token;
    state.csrfHeader = session.csrf_header || state.csrfHeader;
  } catch (err) { reportError(err); return; }
  for (const input of document.querySelectorAll('input[name="range"]')) {
    input.addEventListener("change", () => { state.range = Number(input.value); if (state.view === "services") refresh(); });
  }
  logs.bind();
  $("#secret-form").addEventListener("submit", saveSecret);
  $("#backup-now").addEventListener("click", backupNow);
  $("#db-check-run").addEventListener("click", runCheck);
  $("#notice-close").addEventListener("click", () => notify(""));
  $("#link-retry-now").addEventListener("click", () => link.probe());
  $("#logout").addEventListener("click", async () => {
    // Nothing new starts, and what is in flight ends before the page goes: navigating away
    // would abort it (the daemon sees a dropped request, the browser a failed one).
    stopTimer(); logs.stop(); stopBoardStream();
    state.leaving = true;
    try { await api("POST", ROUTES.logout); } catch (err) { state.leaving = false; reportError(err); return; }
    while (inflight.size) await Promise.allSettled([...inflight]);
    location.assign("/");
  });
  // The skip link moves the focus to the content; it is not a view ("#main" once read as a
  // route and switched the page to Services).
  window.addEventListener("pagehide", () => { state.leaving = true; });
  $("a.skip").addEventListener("click", (e) => { e.preventDefault(); $("#main").focus(); });
  window.addEventListener("hashchange", () => {
    const hash = location.hash.slice(1);
    if (VIEWS.includes(hash)) show(hash);
  });
  show(location.hash.slice(1) || "services");
  loadDaemonInfo();
  setInterval(loadDaemonInfo, 10000);
}

document.addEventListener("DOMContentLoaded", start);
