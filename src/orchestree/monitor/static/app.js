// orchestree dashboard: polls /api/status and renders the snapshot.
// Every string that comes from the tracker goes into the page through textContent
// (or a data-* attribute), never innerHTML: agents write the tracker.
"use strict";

const POLL_MS = 1000;
const LISTING = ["running", "failed", "conflict", "verify_failed", "blocked", "pending",
  "cancelled", "completed", "merged"];
const SETTLED = ["merged", "completed", "failed", "conflict", "verify_failed", "blocked",
  "cancelled"];
const PRIORITY = { high: 0, medium: 1, low: 2 };
const $ = (id) => document.getElementById(id);

const state = { sortKey: "status", sortDir: 1, rows: new Map(), order: "", logLane: null,
  polls: 0 };

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setText(node, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function pct(fraction) {
  return Math.round(fraction * 100) + "%";
}

function showNotice(text) {
  const notice = $("notice");
  notice.hidden = !text;
  setText(notice, text || "");
}

function renderHeader(snap) {
  setText($("repo"), snap.repo + (snap.base_branch ? " (" + snap.base_branch + ")" : ""));
  const badge = $("status");
  setText(badge, snap.status);
  badge.dataset.status = snap.status;
  setText($("updated"), snap.updated_ago_s === null ? "" :
    "tracker updated " + duration(snap.updated_ago_s) + " ago");
  setText($("phase-label"), "phase " + snap.phase + "/4 " + snap.phase_name);
  $("phase-fill").style.width = pct(snap.phase_progress);
  setText($("phase-pct"), pct(snap.phase_progress));
  const st = snap.statistics;
  const bar = $("completion-bar");
  bar.replaceChildren(...SETTLED.filter((s) => st.by_status[s]).map((s) => {
    const seg = el("div", "seg");
    seg.dataset.status = s;
    seg.title = s + ": " + st.by_status[s];
    seg.style.width = (100 * st.by_status[s] / Math.max(st.total, 1)) + "%";
    return seg;
  }));
  const settled = SETTLED.reduce((n, s) => n + (st.by_status[s] || 0), 0);
  setText($("completion-pct"), pct(snap.completion) + " (" + settled + "/" + st.total + ")");
}

function renderStats(st) {
  const cards = [["lanes", st.total], ["running", st.running],
    ["completed", st.by_status.completed], ["merged", st.merged], ["failed", st.failed],
    ["conflicts", st.conflicts], ["blocked", st.by_status.blocked],
    ["pending", st.by_status.pending], ["cancelled", st.by_status.cancelled],
    ["run time", duration(st.elapsed_s)], ["agent time", duration(st.agent_time_s)],
    ["cost", "$" + st.cost_usd.toFixed(2)]];
  const grid = $("stats");
  if (grid.children.length !== cards.length) {
    grid.replaceChildren(...cards.map(([label]) => {
      const card = el("div", "stat");
      card.dataset.stat = label;
      card.append(el("div", "value"), el("div", "label", label));
      return card;
    }));
  }
  cards.forEach(([, value], i) => setText(grid.children[i].firstChild, value));
}

function renderWarnings(warnings) {
  setText($("warning-count"), warnings.length ? "(" + warnings.length + ")" : "");
  const items = warnings.length ? warnings.map((w) => {
    const li = el("li", "warning", w.message);
    li.dataset.kind = w.kind;
    return li;
  }) : [el("li", "none", "no warnings")];
  $("warnings").replaceChildren(...items);
}

function renderAgents(agents) {
  $("agents").replaceChildren(...agents.map((a) => {
    const chip = el("span", "agent");
    chip.dataset.status = a.status;
    chip.title = a.status + (a.pid ? " · pid " + a.pid : "") + (a.host ? " · " + a.host : "");
    chip.append(el("span", "sym", a.symbol), document.createTextNode(a.name));
    return chip;
  }));
}

function compare(a, b) {
  const key = state.sortKey;
  let d = 0;
  if (key === "status") d = LISTING.indexOf(a.status) - LISTING.indexOf(b.status);
  else if (key === "priority") d = (PRIORITY[a.priority] ?? 3) - (PRIORITY[b.priority] ?? 3);
  else if (key === "attempts") d = a.attempts - b.attempts;
  else if (key === "duration") d = (a.duration_s ?? -1) - (b.duration_s ?? -1);
  else if (key === "cost") d = (a.cost_usd ?? -1) - (b.cost_usd ?? -1);
  if (d === 0) d = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  return d * state.sortDir;
}

function laneRow(id) {
  const tr = el("tr");
  tr.dataset.lane = id;
  const cells = ["status", "lane", "priority", "progress", "num", "num", "num", "host",
    "results", "log"].map((cls) => el("td", cls));
  const button = el("button", "log-button", "log");
  button.type = "button";
  button.addEventListener("click", () => openLog(id));
  const diff = el("button", "diff-button", "diff");  // the same panel: diff beside log
  diff.type = "button";
  diff.addEventListener("click", () => openLog(id));
  cells[9].append(diff, button);
  tr.append(...cells);
  return { tr, cells };
}

function renderLanes(lanes) {
  const body = document.querySelector("#lanes tbody");
  const sorted = lanes.slice().sort(compare);
  const seen = new Set();
  for (const lane of sorted) {
    seen.add(lane.id);
    let row = state.rows.get(lane.id);
    if (!row) {
      row = laneRow(lane.id);
      state.rows.set(lane.id, row);
    }
    const c = row.cells;
    row.tr.dataset.status = lane.status;
    c[0].dataset.status = lane.status;
    setText(c[0], lane.status);
    setText(c[1], lane.name === lane.id ? lane.id : lane.id + " · " + lane.name);
    setText(c[2], lane.priority);
    setText(c[3], lane.progress || lane.error || (lane.waiting_for ? "waiting for " + lane.waiting_for : ""));
    setText(c[4], lane.max_attempts ? lane.attempts + "/" + lane.max_attempts : lane.attempts);
    setText(c[5], duration(lane.duration_s));
    setText(c[6], lane.cost_usd === null ? "-" : "$" + lane.cost_usd.toFixed(2));
    setText(c[7], lane.host || "-");
    setText(c[8], lane.results.join(", "));
  }
  for (const [id, row] of state.rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      state.rows.delete(id);
    }
  }
  const order = sorted.map((lane) => lane.id).join("\n");
  if (order !== state.order) {
    // appendChild moves existing rows: only reorder when the order changed.
    for (const lane of sorted) body.append(state.rows.get(lane.id).tr);
    state.order = order;
  }
  document.querySelectorAll("#lanes th[data-sort]").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.sort === state.sortKey);
    th.classList.toggle("desc", th.dataset.sort === state.sortKey && state.sortDir < 0);
  });
}

async function openLog(id) {
  state.logLane = id;
  $("log-panel").hidden = false;
  setText($("log-lane"), id);
  await Promise.all([refreshLog(), openDiff(id)]);
  $("log-panel").scrollIntoView({ block: "nearest" });
}

async function refreshLog() {
  const id = state.logLane;
  if (!id) return;
  try {
    const response = await fetch("/api/log/" + encodeURIComponent(id), { cache: "no-store" });
    const body = await response.json();
    if (state.logLane !== id) return;
    if (!response.ok) {
      setText($("log-meta"), "");
      setText($("log-text"), body.error);
      return;
    }
    setText($("log-meta"), body.log + " · " + body.size + " bytes" +
      (body.truncated ? " · last " + body.text.length + " characters" : ""));
    setText($("log-text"), body.text);
  } catch (err) {
    setText($("log-text"), "cannot fetch the log: " + err);
  }
}

let last = null;

function render(body) {
  const started = performance.now();
  showNotice(body.notice);
  if (body.snapshot) {
    last = body.snapshot;
    renderHeader(last);
    renderStats(last.statistics);
    renderWarnings(last.warnings);
    renderAgents(last.agents);
    renderLanes(last.lanes);
    renderPictures(body);
  }
  window.orchestreeRenderMs = performance.now() - started;
  window.orchestreeRenders = (window.orchestreeRenders || 0) + 1;
}

async function poll() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    render(await response.json());
    setText($("live"), "live");
    state.polls += 1;
    if (state.logLane && state.polls % 2 === 0) await refreshLog();
    if (diffDue(state.polls)) await refreshDiff();
  } catch (err) {
    showNotice("the monitor server does not answer (" + err.message + "); retrying");
    setText($("live"), "");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.querySelectorAll("#lanes th[data-sort]").forEach((th) => {
  th.addEventListener("click", () => {
    if (state.sortKey === th.dataset.sort) state.sortDir = -state.sortDir;
    else { state.sortKey = th.dataset.sort; state.sortDir = 1; }
    if (last) renderLanes(last.lanes);
  });
});
$("log-close").addEventListener("click", () => {
  state.logLane = null;
  $("log-panel").hidden = true;
});
poll();
