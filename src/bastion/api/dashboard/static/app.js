// bastion dashboard: vanilla JS over the daemon's /v1 API. No framework, no build, and no
// request to anything but this origin (the page's Content-Security-Policy enforces it too).
// Every text that came from the API is inserted with textContent, never as HTML.
"use strict";

(() => {
  const ROUTES = {
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
    dbCheck: "/v1/db/check",
    dbMigrations: "/v1/db/migrations",
    backups: "/v1/dashboard/backups",
    checks: "/v1/dashboard/checks",
    events: "/v1/events",
    activity: "/v1/activity",
  };
  const VIEWS = ["services", "logs", "secrets", "database", "activity"];
  const LOG_LIMIT = 500;
  const $ = (sel, root = document) => root.querySelector(sel);

  const state = {
    csrf: null, csrfHeader: "x-bastion-csrf", view: null, timer: null,
    range: 3600, logSource: null, boardSource: null, logPaused: false, logCursor: null,
    logFilter: { source: "", level: "", text: "" }, busy: new Set(),
  };

  // --- HTTP ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
      this.hint = body && body.hint;
    }
  }

  async function api(method, path, { query, body } = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (state.csrf) headers[state.csrfHeader] = state.csrf;
    }
    const response = await fetch(url, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: method === "GET" ? undefined : JSON.stringify(body ?? {}),
    });
    // Read the body even when there is none (204): fetch resolves at the headers, and a page
    // that navigates away before the load has finished aborts the request it just made.
    const text = await response.text();
    if (response.status === 204) return null;
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  const items = (data) => (Array.isArray(data) ? data : (data && (data.items || data.services || data.secrets || data.backups)) || []);
  const pick = (obj, ...keys) => {
    for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
    return undefined;
  };

  // --- small renderers ----------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
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

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function duration(seconds) {
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

  function bytes(n) {
    if (n === undefined || n === null) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = Number(n); let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function toDate(value) {
    if (value === undefined || value === null || value === "") return null;
    if (typeof value === "string" && /^\d+(\.\d+)?$/.test(value)) value = Number(value);
    const d = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  const pad = (n) => String(n).padStart(2, "0");

  // Local time, with the date only when it is not today: "14:03:07", "2026-11-22 09:15:00".
  function when(value) {
    const d = toDate(value);
    if (!d) return "–";
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function timeEl(value) {
    const d = toDate(value);
    return el("time", { datetime: d ? d.toISOString() : null, text: when(value) });
  }

  function notify(message, isError = false) {
    const n = $("#notice");
    n.textContent = message;
    n.classList.toggle("error", isError);
    n.hidden = !message;
  }

  function reportError(err) {
    if (err instanceof ApiError && err.status === 401) {
      notify("Your session has ended. Run `bastion dashboard` for a new sign-in link.", true);
      stopTimer();
      return;
    }
    const hint = err.hint ? ` ${err.hint}` : "";
    notify(`${err.message}.${hint}`, true);
  }

  function confirmAction(text) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      $("#confirm-ok").focus();
    });
  }

  // --- services -----------------------------------------------------------------------------

  const stateName = (s) => String(s || "unknown").toLowerCase();

  async function loadServices() {
    const data = await api("GET", ROUTES.services);
    const list = items(data);
    const host = $("#services");
    $("#services-empty").hidden = list.length > 0;
    const seen = new Set();
    const select = $("#log-service");
    for (const svc of list) {
      const name = pick(svc, "name");
      seen.add(name);
      let card = host.querySelector(`li[data-service="${CSS.escape(name)}"]`);
      if (!card) {
        card = $("#service-card").content.firstElementChild.cloneNode(true);
        card.dataset.service = name;
        card.querySelector(".service-name").textContent = name;
        card.querySelector(".timeline-svg").setAttribute("aria-label", `State timeline of ${name}`);
        for (const button of card.querySelectorAll("button[data-action]")) {
          button.setAttribute("aria-label", `${button.textContent} ${name}`);
          button.addEventListener("click", () => serviceAction(name, button.dataset.action));
        }
        host.append(card);
      }
      renderService(card, svc);
      if (![...select.options].some((o) => o.value === name)) select.append(el("option", { value: name, text: name }));
    }
    for (const card of [...host.children]) if (!seen.has(card.dataset.service)) card.remove();
    await Promise.all(list.map((svc) => loadTimeline(pick(svc, "name")).catch(() => {})));
  }

  function renderService(card, svc) {
    const st = stateName(pick(svc, "state", "status"));
    const badge = card.querySelector(".state");
    badge.dataset.state = st;
    badge.textContent = st.replace("_", "-");
    card.dataset.state = st;
    const running = ["running", "starting", "unhealthy", "half_open"].includes(st);
    // ``since`` is when the service entered its current state: for RUNNING, its uptime.
    const since = toDate(pick(svc, "started_at", "since"));
    if (pick(svc, "since") !== undefined) card.dataset.since = String(pick(svc, "since"));
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
    const reason = pick(svc, "reason");
    card.querySelector(".reason").textContent = reason ? `${st.replace("_", "-")}: ${reason}` : "";
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
      probes.append(el("li", { class: ok ? "probe-ok" : ok === false ? "probe-bad" : "" , text: `${label}${latency !== undefined ? ` · ${Number(latency).toFixed(1)} ms` : ""}${pick(p, "at", "checked_at") ? ` · ${when(pick(p, "at", "checked_at"))}` : ""}` }));
    }
    const busy = state.busy.has(pick(svc, "name"));
    card.querySelector('[data-action="start"]').disabled = busy || running || st === "stopping";
    card.querySelector('[data-action="stop"]').disabled = busy || st === "stopped";
    card.querySelector('[data-action="restart"]').disabled = busy;
  }

  // Live board: every transition the supervisor journals arrives over SSE and is shown at
  // once (so even a sub-second STOPPING -> STARTING is seen); the poll then fills in the rest.
  function startBoardStream() {
    if (state.boardSource) return;
    const url = new URL(ROUTES.eventStream, location.origin);
    url.searchParams.set("kind", "service.transition");
    const source = new EventSource(url);
    state.boardSource = source;
    source.addEventListener("event", (msg) => {
      let ev; try { ev = JSON.parse(msg.data); } catch { return; }
      const card = $(`#services li[data-service="${CSS.escape(ev.subject)}"]`);
      const to = ev.data && ev.data.to;
      if (!card || !to) return;
      // The poll reads the supervisor's memory, the stream its journal: an event older than
      // the state on show is stale and must not move the badge backwards.
      // Times are RFC 3339 strings (or, from an older daemon, epoch seconds): compare as dates.
      const at = toDate(ev.ts);
      const shown = card.dataset.since ? toDate(card.dataset.since) : null;
      if (at && shown && at < shown) return;
      card.dataset.since = String(ev.ts);
      const badge = card.querySelector(".state");
      badge.dataset.state = to; badge.textContent = to.replace("_", "-");
      card.dataset.state = to;
      card.querySelector(".reason").textContent = ev.data.reason ? `${to.replace("_", "-")}: ${ev.data.reason}` : "";
      clearTimeout(state.boardKick);
      state.boardKick = setTimeout(refresh, 150);
    });
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
      refresh();
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
    const since = (Date.now() - state.range * 1000) / 1000;
    const data = await api("GET", ROUTES.events, {
      query: { kind: "service.transition", subject: name, since, order: "desc", limit: 500 },
    });
    const events = items(data).map(transitionOf).filter((e) => e.at && e.to !== "unknown")
      // Event ids follow the order the supervisor journaled the transitions in.
      .sort((a, b) => a.id - b.id || a.at - b.at);
    const card = $(`#services li[data-service="${CSS.escape(name)}"]`);
    if (card) drawTimeline(card, events);
  }

  function drawTimeline(card, events) {
    const svg = card.querySelector(".timeline-svg");
    const W = 600; const H = 36;
    const end = Date.now(); const start = end - state.range * 1000;
    const x = (t) => Math.max(0, Math.min(W, ((t - start) / (end - start)) * W));
    svg.replaceChildren();
    const inRange = events.filter((e) => e.at.getTime() >= start);
    const before = events.filter((e) => e.at.getTime() < start).pop();
    let current = before ? before.to : null; let from = start;
    for (const e of inRange) {
      if (current) svg.append(svgEl("rect", { x: x(from), y: 8, width: Math.max(1, x(e.at.getTime()) - x(from)), height: 20, class: `seg-${current}` }));
      const tick = svgEl("line", { x1: x(e.at.getTime()), x2: x(e.at.getTime()), y1: 2, y2: 34, class: "tick" });
      const title = svgEl("title"); title.textContent = `${e.at.toLocaleTimeString(undefined, { hour12: false })}: ${e.from ? `${e.from} → ` : ""}${e.to}${e.reason ? ` (${e.reason})` : ""}`;
      tick.append(title); svg.append(tick);
      current = e.to; from = e.at.getTime();
    }
    if (current) svg.append(svgEl("rect", { x: x(from), y: 8, width: Math.max(1, W - x(from)), height: 20, class: `seg-${current}` }));
    svg.dataset.events = String(inRange.length);
    const span = { 600: "10 min ago", 3600: "1 h ago", 86400: "24 h ago" }[state.range] || "";
    card.querySelector(".axis-start").textContent = span;
    // Newest first, so the latest change is always the visible one.
    const last = inRange.slice(-8).reverse();
    const list = card.querySelector(".transitions");
    list.dataset.count = String(inRange.length);
    list.replaceChildren(...last.map((e) => el("li", { "data-to": e.to, title: e.reason || null }, timeEl(e.at), ` ${e.to.replace("_", "-")}`)));
    svg.setAttribute("aria-label", `State timeline of ${card.dataset.service}: ${inRange.length} changes in the last ${state.range === 3600 ? "hour" : "day"}`);
  }

  // --- logs ---------------------------------------------------------------------------------

  function logLine(row) {
    const level = String(pick(row, "level", "stream") || "info").toLowerCase();
    const li = el("li", { class: `lvl-${level}`, "data-id": pick(row, "id") },
      el("span", { class: "meta", text: `${when(pick(row, "ts", "at", "created_at"))} ${pick(row, "source", "service") || ""} ${level} ` }),
      String(pick(row, "message", "line", "text") ?? ""));
    return li;
  }

  function appendLogs(rows) {
    const list = $("#log-lines");
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    // The stream is filtered by the daemon (same parameters as the query).
    for (const row of rows) list.append(logLine(row));
    while (list.children.length > LOG_LIMIT) list.firstElementChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  async function loadOlder() {
    const query = { ...state.logFilter, limit: 100, order: "desc" };
    if (state.logCursor) query.cursor = state.logCursor;
    const page = await api("GET", ROUTES.logs, { query });
    const rows = items(page);
    rows.sort((a, b) => Number(pick(a, "id") ?? 0) - Number(pick(b, "id") ?? 0));
    const list = $("#log-lines");
    const first = list.firstElementChild;
    for (const row of rows) list.insertBefore(logLine(row), first);
    state.logCursor = page && page.next_cursor;
    // "Load older" pages back through the daemon's keyset cursor until there is none.
    $("#log-older").disabled = !state.logCursor;
    return rows;
  }

  function startTail() {
    stopTail();
    const url = new URL(ROUTES.logStream, location.origin);
    for (const [k, v] of Object.entries(state.logFilter)) if (v) url.searchParams.set(k, v);
    const source = new EventSource(url);
    state.logSource = source;
    const onMessage = (msg) => {
      if (state.logPaused) return;
      let row; try { row = JSON.parse(msg.data); } catch { return; }
      appendLogs(Array.isArray(row) ? row : [row]);
    };
    source.onmessage = onMessage;
    source.addEventListener("log", onMessage);
    source.onopen = () => { $("#log-status").textContent = "Live: new lines appear as services print them."; };
    source.onerror = () => { $("#log-status").textContent = "Live tail interrupted; reconnecting…"; };
  }

  function stopTail() {
    if (state.logSource) { state.logSource.close(); state.logSource = null; }
  }

  async function enterLogs() {
    // The old stream goes first: its lines would otherwise land under the new filter.
    stopTail();
    $("#log-lines").replaceChildren();
    state.logCursor = null;
    try { await loadOlder(); } catch (err) { reportError(err); }
    startTail();
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
    const del = el("button", { type: "button", class: "danger", "aria-label": `Delete secret ${name}`, text: "Delete", disabled: !meta });
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

  async function loadSecrets() {
    const [page, status, users] = await Promise.all([
      api("GET", ROUTES.secrets, { query: { limit: 500 } }),
      api("GET", `${ROUTES.secrets}/status`),
      declaredSecrets(),
    ]);
    $("#secrets-backend").textContent = `Backend: ${status.backend} (${status.why}); ${status.count} stored in scope ${status.scope}.`;
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

  async function loadDatabase() {
    const [status, migrations, backups, events, checks] = await Promise.all([
      api("GET", ROUTES.dbStatus),
      api("GET", ROUTES.dbMigrations).catch(() => []),
      api("GET", ROUTES.backups).catch(() => []),
      api("GET", ROUTES.events, { query: { limit: 100 } }).catch(() => []),
      api("GET", ROUTES.events, { query: { kind: "db.checked", limit: 1 } }).catch(() => []),
    ]);
    const last = items(checks)[0];
    if (last && !state.checking) {
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
    $("#migrations-table tbody").replaceChildren(...items(migrations).map((m) =>
      el("tr", {}, el("td", { text: m.namespace }), el("td", { text: m.id }), el("td", { text: when(m.applied_at) }))));
    renderBackups(backups);
    // Store events: backups, migrations, quarantines, restores (service transitions live on the board).
    const evs = items(events).filter((e) => !String(e.kind).startsWith("service.")).slice(0, 20);
    $("#db-events").replaceChildren(...(evs.length ? evs.map(feedItem) : [el("li", { class: "muted", text: "No quarantines or restores recorded." })]));
  }

  function renderBackups(backups) {
    const rows = items(backups);
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
    button.disabled = true; progress.hidden = false;
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
      renderBackups(await api("GET", ROUTES.backups));
    } catch (err) {
      reportError(err);
    } finally {
      button.disabled = false; progress.hidden = true;
    }
  }

  async function runCheck() {
    const out = $("#db-check");
    state.checking = true;
    out.textContent = "Checking…";
    try {
      const r = await api("POST", ROUTES.checks, { body: { kind: "quick" } });
      out.dataset.ok = String(r.ok);
      out.textContent = r.ok ? `Last quick check: ok (${when(Date.now())}).` : `quick_check found ${r.problems.length} problem(s): ${r.problems.slice(0, 3).join("; ")}`;
    } catch (err) {
      out.textContent = "Check failed.";
      reportError(err);
    } finally {
      state.checking = false;
    }
  }

  // --- activity -----------------------------------------------------------------------------

  function feedItem(a) {
    const what = pick(a, "action", "kind", "event") || "event";
    const subject = pick(a, "subject", "target", "service", "name");
    const actor = pick(a, "actor", "who");
    return el("li", {}, timeEl(pick(a, "at", "ts", "created_at")),
      `${what}${subject ? ` · ${subject}` : ""}${actor ? ` · by ${actor}` : ""}`);
  }

  async function loadActivity() {
    const [activity, events] = await Promise.all([
      api("GET", ROUTES.activity, { query: { limit: 100 } }),
      api("GET", ROUTES.events, { query: { limit: 100 } }),
    ]);
    const rows = items(activity);
    $("#activity").replaceChildren(...(rows.length ? rows.map(feedItem) : [el("li", { class: "muted", text: "No one has changed anything yet." })]));
    const evs = items(events);
    $("#events").replaceChildren(...(evs.length ? evs.map(eventItem) : [el("li", { class: "muted", text: "No events yet." })]));
  }

  function eventItem(e) {
    const data = e.data || {};
    let text = `${e.kind}${e.subject ? ` · ${e.subject}` : ""}`;
    if (e.kind === "service.transition") text = `${e.subject}: ${data.from ? `${data.from} → ` : ""}${data.to}${data.reason ? ` (${data.reason})` : ""}`;
    return el("li", { "data-kind": e.kind }, timeEl(e.ts), text);
  }

  // --- navigation and refresh ---------------------------------------------------------------

  const LOADERS = { services: loadServices, secrets: loadSecrets, database: loadDatabase, activity: loadActivity, logs: null };
  const REFRESH_MS = { services: 1000, database: 5000, activity: 3000, secrets: 10000 };

  function stopTimer() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

  async function refresh() {
    stopTimer();
    const view = state.view; const load = LOADERS[view];
    if (!load) return;
    try {
      await load();
      document.body.dataset.loaded = view;
    } catch (err) {
      reportError(err);
      if (err instanceof ApiError && err.status === 401) return;
    }
    if (state.view === view) state.timer = setTimeout(refresh, REFRESH_MS[view]);
  }

  function show(view) {
    if (!VIEWS.includes(view)) view = "services";
    if (state.view === view) return;
    state.view = view;
    notify("");
    delete document.body.dataset.loaded;
    for (const panel of document.querySelectorAll("[data-view-panel]")) panel.hidden = panel.dataset.viewPanel !== view;
    for (const a of document.querySelectorAll("nav a[data-view]")) {
      if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    if (view === "services") startBoardStream(); else stopBoardStream();
    if (view === "logs") { stopTimer(); enterLogs().then(() => { document.body.dataset.loaded = "logs"; }); } else { stopTail(); refresh(); }
  }

  async function loadDaemonInfo() {
    try {
      const s = await api("GET", ROUTES.status);
      $("#daemon-info").textContent = `v${s.version} · pid ${s.pid} · port ${s.port} · up ${duration(s.uptime_s)}`;
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
    $("#log-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements;
      state.logFilter = { source: f.source.value, level: f.level.value, text: f.text.value };
      enterLogs();
    });
    $("#log-pause").addEventListener("click", (e) => {
      state.logPaused = !state.logPaused;
      e.target.setAttribute("aria-pressed", String(state.logPaused));
      e.target.textContent = state.logPaused ? "Resume" : "Pause";
      $("#log-status").textContent = state.logPaused ? "Paused: new lines are not shown." : "Live.";
    });
    $("#log-older").addEventListener("click", () => loadOlder().catch(reportError));
    $("#secret-form").addEventListener("submit", saveSecret);
    $("#backup-now").addEventListener("click", backupNow);
    $("#db-check-run").addEventListener("click", runCheck);
    $("#logout").addEventListener("click", async () => {
      try { await api("POST", ROUTES.logout); } catch (err) { reportError(err); return; }
      location.assign("/");
    });
    window.addEventListener("hashchange", () => show(location.hash.slice(1)));
    show(location.hash.slice(1) || "services");
    loadDaemonInfo();
    setInterval(loadDaemonInfo, 10000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
