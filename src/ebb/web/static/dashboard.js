// ebb dashboard: objects by namespace, and for one object its replicas, trigger values against targets and
// scaling events over a time range. Reads the history's JSON API (relative URLs: works under any prefix).
"use strict";

const COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563"];
const REFRESH_MS = 5000;
const state = { range: 3600, from: null, to: null, key: decodeURIComponent(location.hash.slice(1)) || null,
                charts: {}, shape: {} };

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
const fmtDuration = (s) => (s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? (s / 60).toFixed(1) + " min"
                                                                       : s.toFixed(0) + " s");

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${url}: ${resp.status} ${await resp.text()}`);
  return resp.json();
}

function range() {
  if (state.range === "custom" && state.from != null) return [state.from, state.to];
  const now = Date.now() / 1000;
  return [now - state.range, now];
}

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
  history.replaceState(null, "", "#" + encodeURIComponent(key));
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

function chart(name, series, data, events, from, to) {
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
  chart("replicas", [
    { label: "desired", stroke: COLORS[0], width: 2, ...step },
    { label: "running", stroke: COLORS[2], width: 2, fill: "rgba(5,150,105,0.08)", ...step },
  ], [xs, pts.map((p) => p.desired), pts.map((p) => p.ready)], s.events, s.from, s.to);

  const metrics = [];
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
  });
  chart("triggers", series, data, s.events, s.from, s.to);

  const body = $("#events tbody");
  body.replaceChildren(...s.events.slice().reverse().map((e) =>
    el("tr", { class: e.type }, el("td", {}, fmtTime(e.time)), el("td", {}, e.type), el("td", {}, e.reason),
       el("td", {}, e.message))));
}

async function refresh() {
  try {
    const objs = await getJSON("api/objects");
    if (!state.key && objs.objects.length) state.key = objs.objects[0].key;
    renderObjects(objs.objects);
    if (state.key) {
      const [from, to] = range();
      const [kind, ns, name] = state.key.split("/").map(encodeURIComponent);
      const s = await getJSON(`api/objects/${kind}/${ns}/${name}/series?from=${from}&to=${to}&points=600`);
      renderSeries(s);
    }
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#updated").textContent = String(err.message || err);
  }
}

for (const b of document.querySelectorAll("#ranges button[data-range]")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll("#ranges button[data-range]")) o.classList.toggle("on", o === b);
    const custom = b.dataset.range === "custom";
    $("#custom").hidden = !custom;
    if (!custom) { state.range = Number(b.dataset.range); refresh(); }
  });
}
$("#apply").addEventListener("click", () => {
  const from = Date.parse($("#from").value) / 1000, to = Date.parse($("#to").value) / 1000;
  if (!(from < to)) { $("#updated").textContent = "custom range: from must be before to"; return; }
  Object.assign(state, { range: "custom", from, to, auto: false });
  $("#auto").checked = false;
  refresh();
});
setInterval(() => { if ($("#auto").checked) refresh(); }, REFRESH_MS);
// Recreate the charts only when the width really changed (headless browsers fire a resize at start).
let lastWidth = window.innerWidth;
window.addEventListener("resize", () => {
  if (Math.abs(window.innerWidth - lastWidth) < 20) return;
  lastWidth = window.innerWidth;
  for (const k of Object.keys(state.charts)) { state.charts[k].destroy(); delete state.charts[k]; }
  refresh();
});
refresh();
