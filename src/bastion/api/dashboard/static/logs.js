// bastion dashboard: the Logs view. Oldest line at the top, newest at the bottom, like a
// terminal: the view opens at the newest line and follows new ones as they arrive, until the
// reader scrolls up; then new lines only add to the "Jump to newest" button's count.
// "Load older lines" sits at the top of the list, where the older lines appear.
//
// The first page and the live stream are joined without a gap: the stream is opened first
// (it starts after the newest line at that moment), its lines wait while the page loads,
// and lines present in both are shown once (by id).

import { $, el, msOf, pick, when } from "./dom.js";

// Lines kept while following; scrolled up, the reader's lines are never taken away.
const LOG_LIMIT = 500;
const PAGE = 100;
// How close to the bottom still counts as "at the newest line" (a wheel notch is more).
const BOTTOM_SLACK_PX = 24;

export function createLogs({ api, routes, items, reportError, checkLink, setEnabled, blocked, isUnreachable, entered }) {
  const st = {
    source: null, paused: false, follow: true, unseen: 0, ready: false, buffer: [],
    filter: { source: "", level: "", text: "" },
    // Where "Load older" continues: the daemon's keyset cursor, or after lines were dropped
    // from the top while following, the time of the oldest line still shown.
    older: null, generation: 0,
  };
  const scroller = () => $("#log-scroll");
  const list = () => $("#log-lines");
  const atBottom = () => { const s = scroller(); return s.scrollTop + s.clientHeight >= s.scrollHeight - BOTTOM_SLACK_PX; };
  const toBottom = () => { const s = scroller(); s.scrollTop = s.scrollHeight; };
  const filtered = () => Boolean(st.filter.source || st.filter.level || st.filter.text);
  const has = (id) => id !== undefined && list().querySelector(`li[data-id="${CSS.escape(String(id))}"]`) !== null;

  function status(text) { $("#log-status").textContent = text; }

  function describeFilter() {
    const f = st.filter; const parts = [];
    if (f.source) parts.push(`service ${f.source}`);
    if (f.level) parts.push(`level ${f.level} or above`);
    if (f.text) parts.push(`text “${f.text}”`);
    return parts.join(", ");
  }

  function renderEmpty() {
    const empty = $("#log-empty");
    const none = list().children.length === 0;
    empty.hidden = !none;
    if (none) {
      empty.textContent = filtered()
        ? `No lines match this filter (${describeFilter()}). Matching lines will appear here as services print them.`
        : "No log lines yet. Lines appear here as services print them.";
    }
  }

  function line(row) {
    const level = String(pick(row, "level", "stream") || "info").toLowerCase();
    return el("li", { class: `lvl-${level}`, "data-id": pick(row, "id"), "data-ts": String(msOf(pick(row, "ts", "at", "created_at")) / 1000) },
      el("span", { class: "meta", text: `${when(pick(row, "ts", "at", "created_at"))} ${pick(row, "source", "service") || ""} ${level} ` }),
      String(pick(row, "message", "line", "text") ?? ""));
  }

  function renderJump() {
    const button = $("#log-newest");
    button.hidden = st.follow;
    button.textContent = st.unseen ? `Jump to newest (${st.unseen} new)` : "Jump to newest";
  }

  function append(rows) {
    const ol = list();
    let added = 0;
    for (const row of rows) {
      if (has(pick(row, "id"))) continue;
      ol.append(line(row));
      added += 1;
    }
    if (st.follow) {
      let dropped = false;
      while (ol.children.length > LOG_LIMIT) { ol.firstElementChild.remove(); dropped = true; }
      if (dropped) {
        // The cursor pointed past lines no longer shown: continue from the oldest one kept.
        st.older = { until: Number(ol.firstElementChild.dataset.ts) + 1e-6 };
        setEnabled($("#log-older"), true);
      }
      toBottom();
    } else {
      st.unseen += added;
    }
    renderEmpty();
    renderJump();
  }

  async function loadOlder() {
    const generation = st.generation;
    const query = { ...st.filter, limit: PAGE, order: "desc" };
    if (st.older && st.older.cursor) query.cursor = st.older.cursor;
    if (st.older && st.older.until !== undefined) query.until = st.older.until;
    const page = await api("GET", routes.logs, { query });
    if (generation !== st.generation) return [];  // the filter changed meanwhile
    const rows = items(page).sort((a, b) => Number(pick(a, "id") ?? 0) - Number(pick(b, "id") ?? 0));
    const s = scroller(); const ol = list();
    // Keep the reader's place: what was on screen stays there as lines are added above it.
    const fromBottom = s.scrollHeight - s.scrollTop;
    const first = ol.firstElementChild;
    for (const row of rows) if (!has(pick(row, "id"))) ol.insertBefore(line(row), first);
    s.scrollTop = s.scrollHeight - fromBottom;
    const next = page && page.next_cursor;
    st.older = next ? { ...(st.older && st.older.until !== undefined ? { until: st.older.until } : {}), cursor: next } : null;
    setEnabled($("#log-older"), Boolean(st.older));
    renderEmpty();
    return rows;
  }

  function startTail() {
    stop();
    const url = new URL(routes.logStream, location.origin);
    for (const [k, v] of Object.entries(st.filter)) if (v) url.searchParams.set(k, v);
    const source = new EventSource(url);
    st.source = source;
    const onMessage = (msg) => {
      if (st.paused) return;
      let row; try { row = JSON.parse(msg.data); } catch { return; }
      const rows = Array.isArray(row) ? row : [row];
      if (st.ready) append(rows); else st.buffer.push(...rows);
    };
    source.addEventListener("log", onMessage);
    source.onmessage = onMessage;
    source.onopen = () => {
      if (!st.ready) return;  // "Live" once the lines before it are on screen (enter() says it)
      status(st.paused ? "Paused: new lines are not shown."
        : filtered() && list().children.length === 0 ? "Live: waiting for matching lines."
          : "Live: new lines appear at the bottom as services print them.");
    };
    source.onerror = () => { status("Live tail interrupted; reconnecting…"); checkLink(); };
  }

  function stop() {
    if (st.source) { st.source.close(); st.source = null; }
  }

  // Starts the view over (entered, or a new filter); calls entered() once its first page is
  // on screen, unless a newer enter() has started over meanwhile: the list, the stream and
  // the buffer are that one's, and an older first page answering late must not say "Live"
  // or mark the view loaded before the newer page is there.
  async function enter() {
    st.generation += 1;
    const generation = st.generation;
    st.ready = false; st.buffer = []; st.older = null; st.follow = true; st.unseen = 0;
    list().replaceChildren();
    $("#log-empty").hidden = true;
    renderJump();
    status("Loading…");
    startTail();
    try {
      await loadOlder();
    } catch (err) {
      if (generation !== st.generation) return;
      reportError(err);
      if (isUnreachable(err) || blocked()) { entered(); return; }
    }
    if (generation !== st.generation) return;
    st.ready = true;
    append(st.buffer.splice(0));
    st.follow = true;
    toBottom();
    renderJump();
    if (st.source && st.source.readyState === EventSource.OPEN) st.source.onopen();
    entered();
  }

  function bind() {
    $("#log-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = e.target.elements;
      st.filter = { source: f.source.value, level: f.level.value, text: f.text.value };
      enter();
    });
    $("#log-pause").addEventListener("click", (e) => {
      st.paused = !st.paused;
      e.target.setAttribute("aria-pressed", String(st.paused));
      e.target.textContent = st.paused ? "Resume" : "Pause";
      status(st.paused ? "Paused: new lines are not shown." : "Live: new lines appear at the bottom as services print them.");
    });
    $("#log-older").addEventListener("click", () => loadOlder().catch(reportError));
    $("#log-newest").addEventListener("click", () => {
      st.follow = true; st.unseen = 0;
      toBottom();
      renderJump();
      scroller().focus();
    });
    scroller().addEventListener("scroll", () => {
      const bottom = atBottom();
      if (bottom === st.follow) return;
      st.follow = bottom;
      if (bottom) st.unseen = 0;
      renderJump();
    });
  }

  return { bind, enter, stop };
}
