"""`--plot`: load, replicas per policy and the forecast over time, as a self-contained HTML page (the
dashboard's vendored uPlot, inlined: no CDN) or a PNG (with matplotlib, an optional dependency)."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ebb.errors import EbbError

if TYPE_CHECKING:
    from ebb.simulate import Report

PNG_HINT = (
    "PNG plots need matplotlib, which ebb does not install by default: "
    "pip install 'ebb-autoscaler[plot]' (or write an .html plot, which needs nothing)"
)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def series(report: Report) -> dict[str, Any]:
    """Per trace bucket: time, load (items/s), each policy's peak replicas, and the forecast (items/s)."""
    w = report.workload
    n = len(w.buckets)
    times = (w.start + np.arange(n) * w.interval).tolist()
    load = (w.buckets / w.interval).round(5).tolist()
    fine = 5
    grid = np.arange(n * fine) * (w.interval / fine)
    replicas: dict[str, list[int]] = {}
    forecast: dict[str, list[float | None]] = {}
    for r in report.results:
        steps = r.replica_steps or [(0.0, 0)]
        at = np.asarray([t for t, _ in steps])
        counts = np.asarray([c for _, c in steps])
        idx = np.searchsorted(at, grid, side="right") - 1
        sampled = np.where(idx >= 0, counts[np.maximum(idx, 0)], 0).reshape(n, fine).max(axis=1)
        replicas[r.name] = sampled.astype(int).tolist()
        if r.forecast:
            mean: list[float | None] = [None] * n
            upper: list[float | None] = [None] * n
            for t, m, u in r.forecast:
                i = int(t // w.interval)
                if 0 <= i < n:
                    mean[i], upper[i] = round(m, 5), round(u, 5)
            forecast[f"{r.name} forecast"] = mean
            forecast[f"{r.name} forecast (upper)"] = upper
    return {"time": times, "load": load, "replicas": replicas, "forecast": forecast}


def _static(name: str) -> str:
    return (resources.files("ebb.web") / "static" / "vendor" / name).read_text(encoding="utf-8")


def render_html(report: Report) -> str:
    data = series(report)
    title = f"ebb simulate: {report.trace['file']}"
    summary = json.dumps([r.to_json() for r in report.results])
    script = f"""
const D = {json.dumps(data)};
const SUMMARY = {summary};
const COLORS = {json.dumps(COLORS)};
const width = Math.max(600, window.innerWidth - 40);
// open on the last three days (drag to zoom, double-click for the whole trace)
const last = D.time[D.time.length - 1];
const view = {{x: {{min: Math.max(D.time[0], last - 3 * 86400), max: last}}}};
const cursor = {{sync: {{key: "ebb"}}}};
const loadSeries = [{{}}, {{label: "load (items/s)", stroke: "#555", width: 1}}];
const loadData = [D.time, D.load];
let c = 0;
for (const [name, values] of Object.entries(D.forecast)) {{
  loadSeries.push({{label: name, stroke: name.includes("upper") ? "#ff7f0e88" : "#ff7f0e", width: 1,
                    dash: name.includes("upper") ? [4, 4] : undefined}});
  loadData.push(values);
}}
const plots = [];
const hooks = {{setScale: [(u, key) => {{ if (key === "x") for (const p of plots) if (p !== u &&
  (p.scales.x.min !== u.scales.x.min || p.scales.x.max !== u.scales.x.max))
  p.setScale("x", {{min: u.scales.x.min, max: u.scales.x.max}}); }}]}};
plots.push(new uPlot({{title: "load and forecast", width, height: 300, series: loadSeries, scales: view, cursor,
           hooks, axes: [{{}}, {{label: "items/s"}}]}}, loadData, document.getElementById("load")));
const repSeries = [{{}}];
const repData = [D.time];
for (const [name, values] of Object.entries(D.replicas)) {{
  repSeries.push({{label: name, stroke: COLORS[c++ % COLORS.length], width: 1,
                  paths: uPlot.paths.stepped({{align: 1}})}});
  repData.push(values);
}}
plots.push(new uPlot({{title: "replicas per policy (peak per interval)", width, height: 300, series: repSeries,
           scales: view, cursor, hooks, axes: [{{}}, {{label: "replicas"}}]}}, repData,
           document.getElementById("replicas")));
const keys = ["replica_seconds", "cold_starts", "wait_p50_s", "wait_p95_s", "wait_p99_s", "wait_max_s"];
const t = document.getElementById("summary");
t.innerHTML = "<tr><th>policy</th>" + keys.map(k => `<th>${{k}}</th>`).join("") + "</tr>" +
  SUMMARY.map(p => `<tr><td>${{p.name}}</td>` + keys.map(k => `<td>${{p[k]}}</td>`).join("") + "</tr>").join("");
"""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_static("uPlot.min.css")}
body {{ font-family: system-ui, sans-serif; margin: 20px; }}
table {{ border-collapse: collapse; margin-top: 12px; }} td, th {{ padding: 2px 10px; text-align: right; }}
</style></head>
<body><h3>{html.escape(title)}</h3>
<div id="load"></div><div id="replicas"></div><table id="summary"></table>
<script>{_static("uPlot.iife.min.js")}</script>
<script>{script}</script>
</body></html>
"""


def render_png(report: Report, path: Path) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise EbbError(f"--plot {path}: {PNG_HINT}") from None
    data = series(report)
    t = np.asarray(np.round(data["time"]), dtype=np.int64).astype("datetime64[s]")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    ax1.plot(t, data["load"], color="#555", lw=0.6, label="load (items/s)")
    for name, values in data["forecast"].items():
        ax1.plot(t, [np.nan if v is None else v for v in values], lw=0.6, label=name)
    ax1.set_ylabel("items/s")
    ax1.legend(loc="upper right", fontsize=7)
    for i, (name, values) in enumerate(data["replicas"].items()):
        ax2.step(t, values, where="post", lw=0.6, color=COLORS[i % len(COLORS)], label=name)
    ax2.set_ylabel("replicas")
    ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plot(report: Report, path: Path) -> None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            render_png(report, path)
        elif suffix in (".html", ".htm"):
            path.write_text(render_html(report), encoding="utf-8")
        else:
            raise EbbError(f"--plot {path}: expected a .html or .png file name")
    except OSError as exc:
        raise EbbError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
