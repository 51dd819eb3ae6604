"""``GET /`` on ``--metrics-bind``: a status page for a person, next to ``/metrics`` for Prometheus.

One self-contained document (no external script, style or font: it works on a host with no
internet access, and says nothing to a third party). Its script polls ``status.json`` every
second, redraws the worker table and draws each worker's requests per second over the last
minutes as an inline SVG chart. The address is relative, so the page also works behind a
proxy that mounts it under a prefix.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sharedsock status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 .3em; }
  .summary { margin: .2em 0; }
  .error { color: #b00020; font-weight: bold; min-height: 1.4em; }
  table { border-collapse: collapse; margin: .8em 0; background: #fff; }
  th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
  th { background: #eee; font-weight: 600; }
  td.text, th.text { text-align: left; }
  tr.starting td, tr.draining td, tr.killed td, tr.aborting td { color: #888; }
  tr.retiring td { color: #8a6d00; }
  .swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .4em; }
  svg { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
  svg text { font-size: 11px; fill: #666; }
  .legend span { margin-right: 1.2em; white-space: nowrap; }
</style>
</head>
<body>
<h1>sharedsock <span id="version"></span></h1>
<div class="summary" id="master"></div>
<div class="summary" id="totals"></div>
<div class="error" id="error"></div>
<table id="worker-table">
  <thead><tr>
    <th>worker</th><th>pid</th><th>gen</th><th class="text">state</th><th>requests</th><th>req/s</th>
    <th>in flight</th><th>open</th><th>accepted</th><th>share</th><th>RSS</th><th>age</th><th>heartbeat</th>
  </tr></thead>
  <tbody id="workers"></tbody>
</table>
<h2 style="font-size:1.05em">Requests per second, per worker</h2>
<svg id="chart" viewBox="0 0 820 260" width="820" height="260" data-updates="0"
     role="img" aria-label="requests per second per worker"></svg>
<div class="legend" id="legend"></div>
<table id="listener-table">
  <thead><tr><th class="text">listener</th><th>accept queue</th><th>limit</th></tr></thead>
  <tbody id="listeners"></tbody>
</table>
<script>
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#17becf", "#bcbd22", "#7f7f7f"];
const SVG = "http://www.w3.org/2000/svg";  // a namespace name, not fetched
const W = 820, H = 260, LEFT = 50, RIGHT = 10, TOP = 10, BOTTOM = 25;
let updates = 0;

function color(pid) { return COLORS[Math.abs(pid) % COLORS.length]; }
function age(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
}
function mib(b) { return b === null || b === undefined ? "-" : (b / 1048576).toFixed(1) + " MiB"; }
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function renderTables(s) {
  document.getElementById("version").textContent = s.version;
  const m = s.master, t = s.totals;
  document.getElementById("master").textContent =
    "master " + m.pid + ", up " + age(m.uptime_seconds) + "; generation " + m.generation + "; " +
    m.workers_ready + " of " + m.workers_wanted + " workers ready; " +
    (m.stopping ? "stopping" : m.ready ? "ready" : "not ready") + "; reloads " + m.reloads;
  document.getElementById("totals").textContent =
    "requests " + t.requests + " (" + t.requests_per_second.toFixed(1) + "/s), 5xx " + t.errors_5xx +
    ", in flight " + t.in_flight + ", connections open " + t.connections_open + ", accepted " + t.accepted;
  const body = document.getElementById("workers");
  body.replaceChildren();
  for (const w of s.workers) {
    const row = document.createElement("tr");
    row.className = w.state;
    row.dataset.pid = w.pid;
    const first = cell(row, "");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color(w.pid);
    first.append(swatch, String(w.worker));
    cell(row, w.pid); cell(row, w.generation); cell(row, w.state, "text");
    cell(row, w.requests); cell(row, w.requests_per_second.toFixed(1)); cell(row, w.in_flight);
    cell(row, w.connections_open); cell(row, w.accepted);
    cell(row, (w.accepted_share * 100).toFixed(1) + "%"); cell(row, mib(w.rss_bytes));
    cell(row, age(w.age_seconds));
    cell(row, w.heartbeat_age_seconds === null ? "-" : w.heartbeat_age_seconds.toFixed(1) + "s");
    body.appendChild(row);
  }
  const lbody = document.getElementById("listeners");
  lbody.replaceChildren();
  for (const l of s.listeners) {
    const row = document.createElement("tr");
    cell(row, l.url, "text");
    cell(row, l.queue === null ? "-" : l.queue);
    cell(row, l.limit === null ? "-" : l.limit);
    lbody.appendChild(row);
  }
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderChart(s) {
  const chart = document.getElementById("chart");
  const series = s.history.series.filter(x => x.points.length > 0);
  const live = new Set(s.workers.map(w => w.pid));
  let span = 60, top = 0;
  for (const x of series) {
    for (const [t, r] of x.points) { span = Math.max(span, -t); top = Math.max(top, r); }
  }
  span = Math.min(span, s.history.window_seconds);
  top = niceMax(top);
  const X = t => LEFT + (W - LEFT - RIGHT) * (1 + t / span);
  const Y = r => TOP + (H - TOP - BOTTOM) * (1 - r / top);
  chart.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const r = top * i / 4;
    chart.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: Y(r), y2: Y(r), stroke: "#eee"}));
    chart.appendChild(el("text", {x: LEFT - 5, y: Y(r) + 4, "text-anchor": "end"},
                         r >= 100 ? r.toFixed(0) : r.toFixed(1)));
  }
  const step = span > 120 ? 60 : span > 30 ? 15 : 5;
  for (let t = 0; t <= span; t += step) {
    chart.appendChild(el("text", {x: X(-t), y: H - 8, "text-anchor": "middle"}, t ? "-" + age(t) : "now"));
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const x of series) {
    const points = x.points.map(([t, r]) => X(t).toFixed(1) + "," + Y(r).toFixed(1)).join(" ");
    const line = el("polyline", {points: points, fill: "none", stroke: color(x.pid), "stroke-width": 2,
                                 "data-pid": x.pid, "data-last": x.points[x.points.length - 1][1],
                                 "data-max": Math.max(...x.points.map(p => p[1]))});
    if (!live.has(x.pid)) {
      line.setAttribute("stroke-dasharray", "4 3");
      line.setAttribute("opacity", "0.5");
    }
    chart.appendChild(line);
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color(x.pid);
    item.append(swatch, "worker " + x.worker + " (pid " + x.pid + (live.has(x.pid) ? "" : ", exited") + ")");
    legend.appendChild(item);
  }
  updates += 1;
  chart.dataset.updates = updates;
}

async function tick() {
  try {
    const answer = await fetch("status.json", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const s = await answer.json();
    renderTables(s);
    renderChart(s);
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "no answer from the master (" + e.message + "); retrying";
  } finally {
    setTimeout(tick, 1000);
  }
}
tick();
</script>
</body>
</html>
"""


def page() -> tuple[int, str, bytes]:
    return 200, "text/html; charset=utf-8", PAGE.encode()
