// ebb dashboard. Home: the fleet overview (every object by namespace, sparklines, state, cost, a stacked chart of
// replicas per application), one /api/overview request per view, paged. An object's detail: its replicas,
// trigger values against targets and scaling events. The URL's hash holds the view's state (range, filters,
// page, selected object), so a view can be shared. Relative URLs: works under any path prefix.
"use strict";

const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563"];
const REFRESH_MS = 5000;
const PAGE = 50;
const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
const STATES = ["active", "idle", "paused", "fallback", "error"];
const state = { range: "auto", from: null, to: null, key: null, ns: "", st: "", q: "", page: 0,
                charts: {}, shape: {}, busy: false, view: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
};
const fmtTime = (t) => new Date(t * 1000).toLocaleString();
const fmtNum = (v) => (v == null ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2));
const fmtMoney = (v) => (v == null ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(2));
const fmtDuration = (s) => (s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? (s / 60).toFixed(1) + " min"
                                                                       : s.toFixed(0) + " s");

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${url}: ${resp.status} ${await resp.text()}`);
  return resp.json();
}

// --- URL state ------------------------------------------------------------------------------------------------

function readHash() {
  const raw = decodeURIComponent(location.hash.slice(1));
  // The old form, #Kind/namespace/name, still selects an object.
  const p = raw.includes("=") ? new URLSearchParams(location.hash.slice(1)) : new URLSearchParams(raw ? { obj: raw } : {});
  state.key = p.get("obj") || null;
  state.range = p.get("range") || "auto";
  state.from = p.has("from") ? Number(p.get("from")) : null;
  state.to = p.has("to") ? Number(p.get("to")) : null;
  state.ns = p.get("ns") || "";
  state.st = p.get("state") || "";
  state.q = p.get("q") || "";
  state.page = Number(p.get("page") || 0);
}

function writeHash() {
  const p = new URLSearchParams();
  if (state.range !== "auto") p.set("range", state.range);
  if (state.range === "custom") { p.set("from", state.from); p.set("to", state.to); }
  if (state.ns) p.set("ns", state.ns);
  if (state.st) p.set("state", state.st);
  if (state.q) p.set("q", state.q);
  if (state.page) p.set("page", state.page);
  if (state.key) p.set("obj", state.key);
  const hash = p.toString();
  history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
}

function rangeQuery() {
  if (state.range === "custom" && state.from != null) return `from=${state.from}&to=${state.to}`;
  if (RANGES[state.range]) return `from=${state.range}`;
  return "";  // auto: the server picks what the history holds, up to a day
}

function syncControls() {
  for (const b of document.querySelectorAll("#ranges button[data-range]")) b.classList.toggle("on", b.dataset.range === state.range);
  $("#custom").hidden = state.range !== "custom";
  $("#f-name").value = state.q;
}

// --- Overview ---------------------------------------------------------------------------------------------------

function spark(values, marks, color, width = 120, height = 26) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("class", "spark");
  const vs = values.filter((v) => v != null);
  if (!vs.length) return svg;
  const hi = Math.max(1, ...vs), n = values.length;
  const x = (i) => (n === 1 ? width / 2 : (i / (n - 1)) * (width - 2) + 1);
  const y = (v) => height - 2 - (v / hi) * (height - 4);
  if (marks) marks.forEach((m, i) => {
    if (!m) return;
    const r = document.createElementNS(svg.namespaceURI, "rect");
    r.setAttribute("x", Math.max(0, x(i) - 2)); r.setAttribute("y", 0); r.setAttribute("width", 4);
    r.setAttribute("height", height); r.setAttribute("fill", "rgba(220,38,38,0.25)");
    r.setAttribute("class", "maxmark");
    svg.append(r);
  });
  const pts = [];
  values.forEach((v, i) => { if (v != null) pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", pts.join(" ")); line.setAttribute("fill", "none");
  line.setAttribute("stroke", color); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

function kpi(label, value, cls = "") {
  return el("div", { class: cls }, el("b", {}, value), label);
}

function renderKpis(v) {
  const t = v.totals;
  const kids = [kpi("objects", String(v.total)),
                kpi("replica-hours used", (t.replica_seconds / 3600).toFixed(1)),
                kpi("replica-hours at the peak all the time", (t.peak_replica_seconds / 3600).toFixed(1)),
                kpi("replica-hours at maxReplicaCount", (t.max_replica_seconds / 3600).toFixed(1))];
  if (t.cost != null) {
    kids.push(kpi("spent", fmtMoney(t.cost)), kpi("at the peak all the time", fmtMoney(t.cost_at_peak)),
              kpi("at maxReplicaCount", fmtMoney(t.cost_at_max)));
  }
  kids.push(kpi("hit maxReplicaCount", `${t.objects_hitting_max}`, t.objects_hitting_max ? "bad" : ""));
  $("#kpis").replaceChildren(...kids);
}

function renderStacked(v) {
  const s = v.stacked;
  const box = $("#chart-fleet");
  const raw = s.series.map((x) => x.replicas.map((r) => r ?? 0));
  // Cumulative sums, drawn top (largest) first so each band covers the one below it.
  const cum = [];
  raw.forEach((r, i) => cum.push(r.map((val, j) => val + (i ? cum[i - 1][j] : 0))));
  const order = cum.map((_, i) => i).reverse();
  const series = order.map((i) => {
    const color = s.series[i].key ? COLORS[i % COLORS.length] : "#9ca3af";
    return { label: s.series[i].label, stroke: color, fill: color + "cc", width: 1, points: { show: false },
             value: (u, _v, _si, idx) => (idx == null ? "–" : fmtNum(raw[i][idx])) };
  });
  const data = [s.time, ...order.map((i) => cum[i])];
  const shape = series.map((x) => x.label).join("|");
  state.fleetView = [v.from, v.to];
  if (state.charts.fleet && state.shape.fleet === shape) { state.charts.fleet.setData(data); return; }
  if (state.charts.fleet) state.charts.fleet.destroy();
  box.replaceChildren();
  state.charts.fleet = new uPlot({
    width: Math.max(300, box.clientWidth - 2), height: 220,
    scales: { x: { time: true, range: () => state.fleetView }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    series: [{}, ...series], axes: [{}, { size: 50 }],
  }, data, box);
  state.shape.fleet = shape;
}

function renderFleet(v) {
  const body = $("#fleet tbody");
  const rows = [];
  let ns = null;
  for (const o of v.objects) {
    if (o.namespace !== ns) {
      ns = o.namespace;
      rows.push(el("tr", { class: "ns" }, el("td", { colspan: "10" }, ns)));
    }
    const hit = o.max_hit_seconds > 0;
    const ev = o.last_event;
    rows.push(el("tr", { class: "row", "data-key": o.key, "data-state": o.state, onclick: () => select(o.key) },
      el("td", {}, el("b", {}, o.name), el("span", { class: "kindtag" }, o.kind)),
      el("td", {}, el("span", { class: "badge " + o.state }, o.state)),
      el("td", { class: "sp-replicas" }, spark(o.spark.replicas, o.spark.max_hit, COLORS[2])),
      el("td", { class: "sp-trigger" }, spark(o.spark.value, null, COLORS[0])),
      el("td", { class: hit ? "num maxhit" : "num", title: hit ? `at maxReplicaCount for ${fmtDuration(o.max_hit_seconds)}` : "" },
         `${fmtNum(o.current)} / ${fmtNum(o.max_replicas)}${hit ? " ▲max" : ""}`),
      el("td", { class: "ev " + (ev ? ev.type : ""), title: ev ? `${fmtTime(ev.time)}: ${ev.message}` : "" },
         ev ? ev.reason : "–"),
      el("td", { class: "num replica-hours" }, (o.replica_seconds / 3600).toFixed(2)),
      el("td", { class: "num cost" }, fmtMoney(o.cost)),
      el("td", { class: "num" }, fmtMoney(o.cost_at_peak)),
      el("td", { class: "num" }, fmtMoney(o.cost_at_max))));
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "10", class: "muted" }, "No objects match.")));
  body.replaceChildren(...rows);
  const first = v.total ? v.offset + 1 : 0, last = v.offset + v.objects.length;
  $("#page-info").textContent = `${first}–${last} of ${v.total}`;
  $("#prev").disabled = v.offset === 0;
  $("#next").disabled = last >= v.total;
}

function renderFilters(v) {
  const nsSel = $("#f-namespace"), stSel = $("#f-state");
  nsSel.replaceChildren(el("option", { value: "" }, "all"), ...v.namespaces.map((n) => el("option", { value: n }, n)));
  nsSel.value = state.ns;
  stSel.replaceChildren(el("option", { value: "" }, "all"),
    ...STATES.map((s) => el("option", { value: s }, `${s} (${v.states[s] || 0})`)));
  stSel.value = state.st;
  const q = rangeQuery();
  $("#csv").setAttribute("href", "api/usage.csv" + (q ? "?" + q : ""));
}

// The HTTP interceptor's routes (ebb run with HTTPScaledObjects or InterceptorRoutes): hidden when there are none
// or the server has no /api/routes (ebb dashboard, the operator).
function renderRoutes(v) {
  const routes = v ? v.routes : [];
  $("#http").hidden = !routes.length;
  const ago = (t) => (t == null ? "–" : fmtDuration(Math.max(0, v.now - t)) + " ago");
  $("#routes tbody").replaceChildren(...routes.map((r) => {
    const matches = [(r.hosts.length ? r.hosts : ["*"]).join(", "), r.paths.length ? r.paths.join(", ") : ""];
    const errors = r.upstream_errors + r.timeouts + r.rejected;
    return el("tr", { class: "route" + (r.broken ? " Warning" : ""), "data-route": `${r.kind}/${r.namespace}/${r.name}` },
      el("td", {}, el("b", {}, r.name), el("span", { class: "kindtag" }, r.kind), el("div", { class: "muted" }, r.namespace)),
      el("td", {}, matches[0], el("div", { class: "muted" }, matches[1])),
      el("td", { title: r.broken || "" }, r.broken ? el("span", { class: "badge error" }, "broken") : r.target),
      el("td", { class: "num ready" }, String(r.ready_replicas)),
      el("td", { class: "num in-flight" }, String(r.in_flight)),
      el("td", { class: "num held" + (r.held ? " maxhit" : "") }, String(r.held)),
      el("td", { class: "num rate" }, r.rate.toFixed(2)),
      el("td", { class: "num" }, String(r.requests)),
      el("td", { class: "num", title: `${r.upstream_errors} upstream errors (502), ${r.timeouts} timeouts (504), ` +
                                      `${r.rejected} rejected (503), ${r.abandoned} held clients left` }, String(errors)),
      el("td", { class: "ev", title: r.last_cold_start_message || "" },
         r.last_cold_start == null ? "–" : `${ago(r.last_cold_start)}: ${r.last_cold_start_message}`));
  }));
}

async function refreshRoutes() {
  try { renderRoutes(await getJSON("api/routes")); } catch (err) { renderRoutes(null); }
}

async function refreshOverview() {
  const params = [rangeQuery(), `offset=${state.page * PAGE}`, `limit=${PAGE}`, "points=60"];
  if (state.ns) params.push("namespace=" + encodeURIComponent(state.ns));
  if (state.st) params.push("state=" + encodeURIComponent(state.st));
  if (state.q) params.push("name=" + encodeURIComponent(state.q));
  const routes = refreshRoutes();
  const v = await getJSON("api/overview?" + params.filter(Boolean).join("&"));
  state.autoFrom = v.from;
  renderFilters(v);
  renderKpis(v);
  renderStacked(v);
  renderFleet(v);
  await routes;
}

// --- Detail -----------------------------------------------------------------------------------------------------

function renderObjects(objects) {
  const aside = $("#objects");
  aside.replaceChildren();
  if (!objects.length) { aside.append(el("p", { class: "muted" }, "No history yet.")); return; }
  let ns = null;
  for (const o of objects) {
    if (o.namespace !== ns) { ns = o.namespace; aside.append(el("h4", {}, ns)); }
    const badges = el("span");
    if (o.paused) badges.append(el("span", { class: "badge paused" }, "paused"));
    else badges.append(el("span", { class: "badge" + (o.active ? " active" : "") }, o.active ? "active" : "idle"));
    const trig = (o.triggers || []).map((t) => `${t.name || t.metric} ${t.error ? "error" : fmtNum(t.value)}/${fmtNum(t.target)}`);
    const row = el("div", { class: "obj" + (o.key === state.key ? " sel" : ""), "data-key": o.key,
                            onclick: () => select(o.key) },
      el("span", { class: "name" }, o.name), badges,
      el("span", { class: "kind" }, `${o.kind} → ${o.target || "?"}`),
      el("span", { class: "kind" }, `${fmtNum(o.current)} → ${fmtNum(o.desired)} (ready ${fmtNum(o.ready)})`),
      el("span", { class: "trig" }, trig.join(", ")));
    aside.append(row);
  }
}

function select(key) {
  state.key = key;
  writeHash();
  for (const row of document.querySelectorAll(".obj")) row.classList.toggle("sel", row.dataset.key === key);
  refresh();
}

// Scaling events as vertical lines on both charts (same time axis), warnings in amber.
function eventsPlugin(getEvents) {
  return { hooks: { draw: (u) => {
    const ctx = u.ctx;
    ctx.save();
    for (const ev of getEvents(u)) {
      const x = u.valToPos(ev.time, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = ev.type === "Warning" ? "#d97706" : "#9ca3af";
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    }
    ctx.restore();
  } } };
}

function chart(name, series, data, events, from, to, bands = []) {
  const box = $("#chart-" + name);
  const shape = series.map((s) => s.label).join("|");
  const existing = state.charts[name];
  if (existing && state.shape[name] === shape) {
    existing._events = events;
    existing.setData(data);
    return;
  }
  if (existing) existing.destroy();
  box.replaceChildren();
  const opts = {
    width: Math.max(300, box.clientWidth - 2), height: 240,
    scales: { x: { time: true, range: () => state.view }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    series: [{}, ...series],
    axes: [{}, { size: 50 }],
    plugins: [eventsPlugin((u) => u._events || [])],
    bands: bands,
  };
  const u = new uPlot(opts, data, box);
  u._events = events;
  state.charts[name] = u;
  state.shape[name] = shape;
}

function renderSeries(s) {
  const pts = s.points;
  state.view = [s.from, s.to];
  const xs = pts.map((p) => p.time);
  $("#hint").hidden = true;
  const [kind, ns, name] = s.key.split("/");
  $("#title").textContent = `${kind} ${ns}/${name}`;
  const saved = s.peak_replica_seconds > 0 ? 100 * (1 - s.replica_seconds / s.peak_replica_seconds) : 0;
  $("#summary").replaceChildren(
    el("div", { id: "replica-seconds" }, el("b", {}, fmtNum(Math.round(s.replica_seconds))), "replica-seconds used"),
    el("div", { id: "peak-cost" }, el("b", {}, fmtNum(Math.round(s.peak_replica_seconds))),
       `at the peak (${fmtNum(s.peak_replicas)}) all the time`),
    el("div", {}, el("b", {}, saved.toFixed(0) + " %"), "saved"),
    el("div", {}, el("b", {}, fmtDuration(s.covered_seconds)), "observed"));
  const step = { paths: uPlot.paths.stepped({ align: 1 }) };
  const replicaSeries = [
    { label: "desired", stroke: COLORS[0], width: 2, ...step },
    { label: "running", stroke: COLORS[2], width: 2, fill: "rgba(5,150,105,0.08)", ...step },
  ];
  const replicaData = [xs, pts.map((p) => p.desired), pts.map((p) => p.ready)];
  if (state.maxReplicas != null) {
    // maxReplicaCount as a red dashed line: where desired touches it, the autoscaler is capped.
    replicaSeries.push({ label: "maxReplicaCount", stroke: "#dc2626", width: 1, dash: [3, 3] });
    replicaData.push(pts.map(() => state.maxReplicas));
  }
  chart("replicas", replicaSeries, replicaData, s.events, s.from, s.to);

  const metrics = [];
  const bands = [];
  for (const p of pts) for (const t of p.triggers) if (!metrics.some((m) => m.metric === t.metric)) metrics.push(t);
  const series = [];
  const data = [xs];
  metrics.forEach((m, i) => {
    const color = COLORS[i % COLORS.length];
    const label = m.name || m.metric;
    const find = (p) => p.triggers.find((t) => t.metric === m.metric);
    series.push({ label: label, stroke: color, width: 2 });
    data.push(pts.map((p) => { const t = find(p); return t && t.value != null ? t.value : null; }));
    series.push({ label: label + " target", stroke: color, width: 1, dash: [6, 4] });
    data.push(pts.map((p) => { const t = find(p); return t ? t.target : null; }));
    // A forecasting trigger (predictkube, ebb.dev/predictive): each step's forecast, made before the step,
    // as a dotted line inside its band, beside the values the trigger then read.
    const fc = (s.forecasts || []).find((f) => f.metric === m.metric);
    if (fc && fc.steps.length) {
      const at = forecastAt(fc.steps, xs);
      const upper = series.length + 1, lower = series.length + 3;
      series.push({ label: label + " forecast upper", stroke: color + "55", width: 1 });
      data.push(at.map((f) => (f ? f.upper : null)));
      series.push({ label: label + " forecast", stroke: color, width: 1.5, dash: [2, 3] });
      data.push(at.map((f) => (f ? f.mean : null)));
      series.push({ label: label + " forecast lower", stroke: color + "55", width: 1 });
      data.push(at.map((f) => (f ? f.lower : null)));
      bands.push({ series: [upper, lower], fill: color + "22" });
    }
  });
  chart("triggers", series, data, s.events, s.from, s.to, bands);

  const body = $("#events tbody");
  body.replaceChildren(...s.events.slice().reverse().map((e) =>
    el("tr", { class: e.type }, el("td", {}, fmtTime(e.time)), el("td", {}, e.type), el("td", {}, e.reason),
       el("td", {}, e.message))));
}

// For each time in xs, the forecast step that covers it (steps are sorted by start time).
function forecastAt(steps, xs) {
  let i = 0;
  return xs.map((x) => {
    while (i + 1 < steps.length && steps[i + 1].time <= x) i++;
    const f = steps[i];
    return f.time <= x && x < f.time + f.step ? f : null;
  });
}

async function refreshDetail() {
  const [kind, ns, name] = state.key.split("/");
  // Only the selected object's namespace: the list stays short in a fleet of thousands.
  const objs = await getJSON("api/objects?namespace=" + encodeURIComponent(ns));
  renderObjects(objs.objects);
  state.maxReplicas = (objs.objects.find((o) => o.key === state.key) || {}).max_replicas;
  const q = rangeQuery() || "from=" + (state.autoFrom != null ? state.autoFrom : "1h");
  const path = [kind, ns, name].map(encodeURIComponent).join("/");
  const s = await getJSON(`api/objects/${path}/series?${q}&points=600`);
  renderSeries(s);
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  const detail = !!state.key;
  $("#overview").hidden = detail;
  $("#detail-view").hidden = !detail;
  try {
    if (detail) await refreshDetail(); else await refreshOverview();
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
    document.body.dataset.view = detail ? "detail" : "overview";
  } catch (err) {
    $("#updated").textContent = String(err.message || err);
  } finally {
    state.busy = false;
  }
}

// The detail view's "all" range is the overview's: ask the server once what it holds.
async function learnAutoRange() {
  try {
    // Filtered to the object, so that the fleet's totals are not computed for a fleet of thousands.
    const [, ns, name] = state.key.split("/").map(encodeURIComponent);
    const v = await getJSON(`api/overview?limit=1&points=1&chart_points=1&namespace=${ns}&name=${name}`);
    state.autoFrom = v.from;
  } catch (err) { /* the detail view falls back to the last hour */ }
}

for (const b of document.querySelectorAll("#ranges button[data-range]")) {
  b.addEventListener("click", () => {
    const custom = b.dataset.range === "custom";
    for (const o of document.querySelectorAll("#ranges button[data-range]")) o.classList.toggle("on", o === b);
    $("#custom").hidden = !custom;
    if (!custom) { state.range = b.dataset.range; writeHash(); refresh(); }
  });
}
$("#apply").addEventListener("click", () => {
  const from = Date.parse($("#from").value) / 1000, to = Date.parse($("#to").value) / 1000;
  if (!(from < to)) { $("#updated").textContent = "custom range: from must be before to"; return; }
  Object.assign(state, { range: "custom", from, to });
  $("#auto").checked = false;
  writeHash();
  refresh();
});
$("#f-namespace").addEventListener("change", (e) => { state.ns = e.target.value; state.page = 0; writeHash(); refresh(); });
$("#f-state").addEventListener("change", (e) => { state.st = e.target.value; state.page = 0; writeHash(); refresh(); });
let typing = null;
$("#f-name").addEventListener("input", (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.q = e.target.value.trim(); state.page = 0; writeHash(); refresh(); }, 250);
});
$("#prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); writeHash(); refresh(); });
$("#next").addEventListener("click", () => { state.page += 1; writeHash(); refresh(); });
for (const a of [$("#home"), $("#back")]) {
  a.addEventListener("click", (e) => { e.preventDefault(); state.key = null; writeHash(); refresh(); });
}
window.addEventListener("hashchange", () => { readHash(); syncControls(); refresh(); });
setInterval(() => { if ($("#auto").checked) refresh(); }, REFRESH_MS);
// Recreate the charts only when the width really changed (headless browsers fire a resize at start).
let lastWidth = window.innerWidth;
window.addEventListener("resize", () => {
  if (Math.abs(window.innerWidth - lastWidth) < 20) return;
  lastWidth = window.innerWidth;
  for (const k of Object.keys(state.charts)) { state.charts[k].destroy(); delete state.charts[k]; }
  refresh();
});
readHash();
syncControls();
if (state.key && state.range === "auto") learnAutoRange().then(refresh); else refresh();
