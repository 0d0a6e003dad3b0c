// orchestree dashboard pictures: the lane graph, the attempts' timeline, a lane's diff.
// Plain SVG built with createElementNS; every lane id, name, outcome and diff line goes
// in through textContent or an attribute, never as markup: agents write the tracker
// and the diffs. app.js calls renderPictures(body) on each poll and openDiff(id) when a
// lane's panel opens.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// Above this many lanes the pictures wait for a click: at 500 lanes the page stays as
// fast as its table (test_monitor_browser_many), and a 500-node graph is drawn once.
const PICTURE_CAP = 150;
const NODE_W = 168;
const NODE_H = 24;
const ROW_GAP = 8;
const COL_GAP = 56;
const PAD = 12;
const LABEL_CHARS = 21;
const ROW_H = 20;
const LABEL_W = 176;
const DIFF_LINES_MAX = 4000;
const DIFF_EVERY_POLLS = 5; // a running lane's diff (git runs) refreshes less often than its log

const pictures = { asked: false, graphKey: "", timelineKey: "", timeline: null, body: null,
  width: 0 };
window.addEventListener("resize", () => {
  pictures.width = 0;
  if (pictures.body) renderPictures(pictures.body);
});

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function clip(text, chars) {
  return text.length <= chars ? text : text.slice(0, chars - 1) + "…";
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

// --- the lane graph --------------------------------------------------------------------

// Each lane's dependency level: 0 without dependencies, else one more than its deepest
// dependency. orchestree refuses cycles; an edited tracker may still hold one, so a lane
// met again while its own level is being worked out counts as level 0.
function dependencyLevels(lanes) {
  const byId = new Map(lanes.map((lane) => [lane.id, lane]));
  const level = new Map();
  const open = new Set();
  const depth = (id) => {
    if (level.has(id)) return level.get(id);
    if (open.has(id)) return 0;
    open.add(id);
    let d = 0;
    for (const dep of byId.get(id).depends_on) {
      if (byId.has(dep)) d = Math.max(d, depth(dep) + 1);
    }
    open.delete(id);
    level.set(id, d);
    return d;
  };
  lanes.forEach((lane) => depth(lane.id));
  return level;
}

// Lanes by level, each level ordered to keep arrows short and uncrossed: a few sweeps
// of the barycentre heuristic, down (a lane near the mean place of its dependencies)
// and up (near the mean place of its dependents), ties by id.
function orderLevels(lanes) {
  const level = dependencyLevels(lanes);
  const levels = [];
  for (const lane of lanes) (levels[level.get(lane.id)] ||= []).push(lane);
  const filled = levels.filter(Boolean);
  const below = new Map(lanes.map((lane) => [lane.id, []]));
  for (const lane of lanes) {
    for (const dep of lane.depends_on) if (below.has(dep)) below.get(dep).push(lane.id);
  }
  const index = new Map();
  const number = (members) => members.forEach((lane, i) => index.set(lane.id, i / members.length));
  const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  filled.forEach((members) => number(members.sort(byId)));
  const mean = (ids, own) => {
    const seen = ids.filter((id) => index.has(id)).map((id) => index.get(id));
    return seen.length ? seen.reduce((a, b) => a + b, 0) / seen.length : own;
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? filled.slice(1) : filled.slice(0, -1).reverse();
    for (const members of order) {
      const key = new Map(members.map((lane) => [lane.id,
        mean(down ? lane.depends_on : below.get(lane.id), index.get(lane.id))]));
      members.sort((a, b) => key.get(a.id) - key.get(b.id) || byId(a, b));
      number(members);
    }
  }
  return filled;
}

// A column per level, left to right; a column taller than `rows` wraps into several,
// so 50 lanes in one level stay on one screen.
function layoutGraph(lanes) {
  const levels = orderLevels(lanes);
  const rows = Math.max(12, Math.ceil(Math.sqrt(lanes.length * 3)));
  const place = new Map();
  let column = 0;
  for (const members of levels) {
    members.forEach((lane, i) => {
      place.set(lane.id, { column: column + Math.floor(i / rows), row: i % rows });
    });
    column += Math.ceil(members.length / rows);
  }
  const tallest = Math.min(rows, Math.max(1, ...levels.map((m) => m.length)));
  const height = tallest * (NODE_H + ROW_GAP);
  const counts = new Map();
  for (const p of place.values()) counts.set(p.column, (counts.get(p.column) || 0) + 1);
  for (const p of place.values()) {
    const shift = (height - counts.get(p.column) * (NODE_H + ROW_GAP)) / 2;
    p.x = PAD + p.column * (NODE_W + COL_GAP);
    p.y = PAD + shift + p.row * (NODE_H + ROW_GAP);
  }
  return { place, width: 2 * PAD + column * (NODE_W + COL_GAP) - COL_GAP,
    height: 2 * PAD + height };
}

function graphEdge(from, to, cls) {
  const x1 = from.x + NODE_W;
  const y1 = from.y + NODE_H / 2;
  const y2 = to.y + NODE_H / 2;
  if (to.column === from.column) {  // a radar pair in one column: a bow on the right
    const bow = x1 + 24 + Math.abs(y2 - y1) / 6;
    return svg("path", { class: cls, d: `M${x1} ${y1} C${bow} ${y1} ${bow} ${y2} ${x1} ${y2}` });
  }
  const [a, b] = to.column > from.column ? [from, to] : [to, from];
  const sx = a.x + NODE_W;
  const sy = a.y + NODE_H / 2;
  const ex = b.x - (cls === "edge" ? 4 : 0);  // room for the arrow head
  const ey = b.y + NODE_H / 2;
  const mid = (sx + ex) / 2;
  return svg("path", { class: cls, d: `M${sx} ${sy} C${mid} ${sy} ${mid} ${ey} ${ex} ${ey}` });
}

function radarPairs(tracker) {
  const found = tracker && Array.isArray(tracker.radar) ? tracker.radar : [];
  return found.filter((r) => r && Array.isArray(r.lanes) && r.lanes.length === 2 &&
    r.lanes.every((side) => typeof side === "string"))
    .map((r) => ({ lanes: r.lanes, files: Array.isArray(r.files) ? r.files.map(String) : [] }));
}

function drawGraph(lanes, radar) {
  const { place, width, height } = layoutGraph(lanes);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": "lane dependency graph" });
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0 0 L8 4 L0 8 z", class: "arrow-head" }));
  const defs = svg("defs");
  defs.append(marker);
  const edges = svg("g", { class: "edges" });
  for (const lane of lanes) {
    for (const dep of lane.depends_on) {
      if (!place.has(dep)) continue;
      const path = graphEdge(place.get(dep), place.get(lane.id), "edge");
      path.setAttribute("marker-end", "url(#arrow)");
      path.dataset.from = dep;
      path.dataset.to = lane.id;
      edges.append(titled(path, `${lane.id} depends on ${dep}`));
    }
  }
  const onBase = new Map();
  for (const { lanes: [a, b], files } of radar) {
    const said = files.join(", ") || "(no file named)";
    if (b === "<base>" && place.has(a)) onBase.set(a, said);
    if (!place.has(a) || !place.has(b)) continue;
    const path = graphEdge(place.get(a), place.get(b), "radar");
    path.dataset.from = a;
    path.dataset.to = b;
    edges.append(titled(path, `radar: ${a} would conflict with ${b} in ${said}`));
  }
  const nodes = svg("g", { class: "nodes" });
  for (const lane of lanes) {
    const p = place.get(lane.id);
    const g = svg("g", { class: "node", transform: `translate(${p.x},${p.y})` });
    g.dataset.lane = lane.id;
    g.dataset.status = lane.status;
    const name = lane.name && lane.name !== lane.id ? " · " + lane.name : "";
    const base = onBase.has(lane.id) ? `\nradar: would conflict with the base in ${onBase.get(lane.id)}` : "";
    titled(g, `${lane.id}${name}\n${lane.status}${base}`);
    g.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 5,
      class: onBase.has(lane.id) ? "radar-base" : "" }));
    g.append(svg("text", { x: 8, y: NODE_H / 2 + 4 }, clip(lane.id, LABEL_CHARS)));
    g.addEventListener("click", () => openLog(lane.id));
    nodes.append(g);
  }
  root.append(defs, edges, nodes);
  return root;
}

// --- the timeline ----------------------------------------------------------------------

function timelineRows(timeline, lanes) {
  const known = new Set(lanes.map((lane) => lane.id));
  const first = (bars) => Date.parse(bars[0].start);
  return Object.entries(timeline.lanes || {})
    .filter(([id, bars]) => known.has(id) && Array.isArray(bars) && bars.length)
    .sort(([a, x], [b, y]) => first(x) - first(y) || (a < b ? -1 : a > b ? 1 : 0));
}

// The time axis: from the run's start to a little past now while lanes run, so that
// each poll only moves "now" and the running bars (a redraw comes when now passes the
// end); after the run, to its last end, with "now" at the right edge, labelled.
function timeAxis(rows, start, now) {
  const running = rows.some(([, bars]) => bars.some((b) => b.end === null));
  const ends = rows.flatMap(([, bars]) => bars.map((b) => (b.end ? Date.parse(b.end) : now)));
  const lastEnd = Math.max(start + 1000, ...ends);
  if (running) return Math.max(now, lastEnd) + Math.max(5000, (Math.max(now, lastEnd) - start) / 4);
  return lastEnd;
}

// Seconds between the axis's ticks: a round step giving at most six of them.
function tickStep(seconds) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
  return steps.find((step) => seconds / step <= 6) || Math.ceil(seconds / 6 / 3600) * 3600;
}

function drawTimeline(timeline, lanes, width) {
  const rows = timelineRows(timeline, lanes);
  const now = Date.parse(timeline.now);
  const start = timeline.start ? Date.parse(timeline.start) : now;
  const end = timeAxis(rows, start, now);
  const plot = Math.max(200, width - LABEL_W - 2 * PAD);
  const x = (t) => LABEL_W + PAD + ((Math.min(t, end) - start) / (end - start)) * plot;
  const top = 36;  // the marks' labels above the ticks' labels
  const height = top + rows.length * ROW_H + PAD;
  const root = svg("svg", { width: LABEL_W + plot + 2 * PAD, height, role: "img",
    "aria-label": "timeline of the lanes' attempts" });
  const axis = svg("g", { class: "axis" });
  const step = tickStep((end - start) / 1000) * 1000;
  for (let t = start; t <= end; t += step) {
    const anchor = t === start ? "start" : "middle";
    axis.append(svg("line", { x1: x(t), x2: x(t), y1: top - 4, y2: height - PAD, class: "tick" }));
    axis.append(svg("text", { x: x(t), y: top - 8, "text-anchor": anchor },
      "+" + duration((t - start) / 1000)));
  }
  const marks = svg("g", { class: "marks" });
  marks.append(svg("line", { x1: x(start), x2: x(start), y1: 2, y2: height - PAD, class: "mark start" }));
  marks.append(svg("text", { x: x(start) + 3, y: 12, class: "mark-label" },
    "start " + new Date(start).toLocaleTimeString()));
  const nowLine = svg("line", { y1: 2, y2: height - PAD, class: "mark now" });
  const nowLabel = svg("text", { y: 12, class: "mark-label", "text-anchor": "end" });
  marks.append(nowLine, nowLabel);
  const growing = [];
  const body = svg("g", { class: "rows" });
  rows.forEach(([id, bars], i) => {
    const y = top + i * ROW_H;
    const row = svg("g", { class: "row" });
    row.dataset.lane = id;
    row.append(titled(svg("text", { x: PAD, y: y + 14, class: "row-label" }, clip(id, LABEL_CHARS)), id));
    for (const bar of bars) {
      const from = Date.parse(bar.start);
      const rect = svg("rect", { x: x(from), y: y + 4, height: ROW_H - 8, rx: 2, class: "bar" });
      rect.dataset.lane = id;
      rect.dataset.attempt = String(bar.attempt);
      rect.dataset.outcome = String(bar.outcome);
      const title = svg("title");
      const said = `${id} · attempt ${bar.attempt} · ${bar.outcome} · `;
      const size = (to) => {
        rect.setAttribute("width", String(Math.max(2, x(to) - x(from))));
        title.textContent = said + duration(Math.max(0, to - from) / 1000);
      };
      if (bar.end) size(Date.parse(bar.end));
      else growing.push(size);
      rect.append(title);
      row.append(rect);
    }
    body.append(row);
  });
  root.append(axis, body, marks);
  // What each poll changes: now, and the bars of the attempts still running.
  const moveNow = (t) => {
    const at = x(t);
    nowLine.setAttribute("x1", String(at));
    nowLine.setAttribute("x2", String(at));
    nowLabel.setAttribute("x", String(at - 3));
    nowLabel.textContent = "now" + (t > end + 500 ? " (" + duration((t - end) / 1000) + " later)" : "");
    growing.forEach((size) => size(t));
  };
  moveNow(now);
  return { root, moveNow, fits: (t) => growing.length === 0 || t <= end };
}

// --- drawing on each poll --------------------------------------------------------------

function askFirst(box, lanes) {
  const button = el("button", "draw-button", `draw the pictures (${lanes.length} lanes)`);
  button.type = "button";
  button.addEventListener("click", () => {
    pictures.asked = true;
    if (pictures.body) renderPictures(pictures.body);
  });
  box.replaceChildren(el("p", "muted",
    `Over ${PICTURE_CAP} lanes the graph and the timeline are drawn on request.`), button);
}

function renderPictures(body) {
  pictures.body = body;
  const snap = body.snapshot;
  if (!snap) return;
  const lanes = snap.lanes;
  const graphBox = $("graph");
  const timelineBox = $("timeline");
  if (lanes.length > PICTURE_CAP && !pictures.asked) {
    if (pictures.graphKey !== "ask") {
      askFirst(graphBox, lanes);
      askFirst(timelineBox, lanes);
      pictures.graphKey = pictures.timelineKey = "ask";
    }
    return;
  }
  const radar = radarPairs(body.tracker);
  const graphKey = JSON.stringify([lanes.map((l) => [l.id, l.status, l.name, l.depends_on]), radar]);
  if (graphKey !== pictures.graphKey) {
    graphBox.replaceChildren(drawGraph(lanes.slice().sort((a, b) => (a.id < b.id ? -1 : 1)), radar));
    pictures.graphKey = graphKey;
  }
  const timeline = body.timeline;
  if (!timeline) return;
  // Read once and on resize: reading it after the table changed would force the
  // browser to lay the whole page out inside every render.
  pictures.width ||= timelineBox.clientWidth || 900;
  const width = pictures.width;
  const now = Date.parse(timeline.now);
  const timelineKey = JSON.stringify([timeline.start, timeline.lanes, width, lanes.length]);
  if (timelineKey === pictures.timelineKey && pictures.timeline.fits(now)) {
    pictures.timeline.moveNow(now);
  } else {
    pictures.timeline = drawTimeline(timeline, lanes, width);
    timelineBox.replaceChildren(pictures.timeline.root);
    pictures.timelineKey = timelineKey;
  }
}

// --- a lane's diff, beside its log -----------------------------------------------------

// What a line of a unified diff is: file headers until a file's first hunk, then the
// hunks' lines (a removed line that reads "--- x" is a removal, not a header).
function diffKinds(lines) {
  let header = false;
  return lines.map((line) => {
    if (line.startsWith("diff --git ")) {
      header = true;
      return "file";
    }
    if (line.startsWith("@@")) {
      header = false;
      return "hunk";
    }
    if (header) return "file";
    if (line.startsWith("+")) return "add";
    if (line.startsWith("-")) return "del";
    if (line.startsWith("\\")) return "meta";
    return "ctx";
  });
}

function showDiff(body) {
  const files = Array.isArray(body.files) ? body.files : [];
  const added = files.reduce((n, f) => n + (f.added || 0), 0);
  const removed = files.reduce((n, f) => n + (f.removed || 0), 0);
  setText($("diff-meta"), `${files.length} file${files.length === 1 ? "" : "s"} · +${added} −${removed}` +
    (body.uncommitted ? " · with uncommitted work" : "") + (body.truncated ? " · truncated" : ""));
  $("diff-files").replaceChildren(...files.map((f) => {
    const li = el("li", "diff-file");
    li.append(el("span", "path", f.path), el("span", "add", f.binary ? "binary" : "+" + f.added),
      el("span", "del", f.binary ? "" : "−" + f.removed));
    return li;
  }));
  const lines = String(body.patch || "").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  const shown = lines.slice(0, DIFF_LINES_MAX);
  const kinds = diffKinds(shown);
  const out = document.createDocumentFragment();
  shown.forEach((line, i) => out.append(el("span", "dl " + kinds[i], line + "\n")));
  if (lines.length > shown.length) {
    out.append(el("span", "dl meta", `… ${lines.length - shown.length} more lines: orchestree diff ${body.lane}`));
  }
  if (!shown.length) out.append(el("span", "dl meta", "no changes"));
  $("diff-text").replaceChildren(out);
}

async function openDiff(id) {
  const lane = last ? last.lanes.find((l) => l.id === id) : null;
  setText($("lane-name"), lane && lane.name !== id ? lane.name : "");
  setText($("diff-meta"), "");
  $("diff-files").replaceChildren();
  setText($("diff-text"), "reading the diff…");
  await refreshDiff();
}

async function refreshDiff() {
  const id = state.logLane;
  if (!id) return;
  try {
    const response = await fetch("/api/lanes/" + encodeURIComponent(id) + "/diff", { cache: "no-store" });
    const body = await response.json();
    if (state.logLane !== id) return;
    if (!response.ok) {
      setText($("diff-meta"), "");
      $("diff-files").replaceChildren();
      setText($("diff-text"), body.error);
      return;
    }
    showDiff(body);
  } catch (err) {
    setText($("diff-text"), "cannot fetch the diff: " + err);
  }
}

// A running lane's diff moves; a finished one's does not.
function diffDue(polls) {
  const lane = last && state.logLane ? last.lanes.find((l) => l.id === state.logLane) : null;
  return lane !== null && lane !== undefined && lane.status === "running" &&
    polls % DIFF_EVERY_POLLS === 0;
}
