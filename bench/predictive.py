"""Predictive scaling against reactive scaling on real traces: every count series in ../shared/traces through
`ebb simulate` with the five policies, the same manifest, service rate and start-up delay.

Each series is scaled so that its median 5-minute count becomes MEDIAN_PER_5MIN items: busy hours stay busy
and quiet hours reach zero, so cold starts exist to be avoided. Results per series and the median over
series; the target compares `predictive` with `keda-default` on the median series.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import write_result
from ebb.simulate import POLICIES, Options, policies_arg, simulate
from ebb.simulate.trace import read_counts

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path(os.environ.get("EBB_TRACES", ROOT.parent / "shared" / "traces"))
MANIFEST = ROOT / "examples" / "simulate-worker.yaml"
MEDIAN_PER_5MIN = 3.0
SERVICE_RATE = 0.2
STARTUP_DELAY = 30.0
SEED = 1
KEYS = ("replica_seconds", "cold_starts", "wait_p50_s", "wait_p95_s", "wait_p99_s", "items_waiting_at_zero")
#: Some real series have missing intervals: filled with the previous value (said in the results).
GAPS = "previous"


def count_series(traces: Path) -> list[Path]:
    """Every `timestamp,value` CSV (the arrivals trace has another header)."""
    out = []
    for path in sorted(traces.glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            header = handle.readline().strip().lower()
        if header == "timestamp,value":
            out.append(path)
    return out


def scale_for(path: Path, median_per_5min: float = MEDIAN_PER_5MIN) -> float:
    trace = read_counts(path, GAPS)
    assert trace.counts is not None
    per_5min = float(np.median(trace.counts)) * 300.0 / trace.interval
    return median_per_5min / per_5min if per_5min > 0 else 1.0


def one(
    path: Path, overrides: tuple[str, ...], policies: tuple[str, ...] = POLICIES, median: float = MEDIAN_PER_5MIN
) -> dict[str, Any]:
    scale = scale_for(path, median)
    started = time.perf_counter()
    report = simulate(
        MANIFEST,
        Options(
            trace=path,
            scale=scale,
            service_rate=SERVICE_RATE,
            startup_delay=STARTUP_DELAY,
            seed=SEED,
            gaps=GAPS,
            overrides=overrides,
            policies=policies,
        ),
    )
    doc = report.to_json()
    doc["seconds"] = round(time.perf_counter() - started, 2)
    return doc


def change(new: float, old: float) -> float | None:
    return None if old == 0 else round(100.0 * (new - old) / old, 1)


def compare(policies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Predictive against keda-default (percent change) and its distance to oracle."""
    p, k, o = policies["predictive"], policies["keda-default"], policies["oracle"]
    return {
        "cold_starts_change_pct": change(p["cold_starts"], k["cold_starts"]),
        "wait_p95_change_pct": change(p["wait_p95_s"], k["wait_p95_s"]),
        "replica_seconds_change_pct": change(p["replica_seconds"], k["replica_seconds"]),
        "oracle_gap": {
            "cold_starts": p["cold_starts"] - o["cold_starts"],
            "wait_p95_s": round(p["wait_p95_s"] - o["wait_p95_s"], 2),
            "replica_seconds_pct": change(p["replica_seconds"], o["replica_seconds"]),
        },
    }


def median_series(series: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per policy and key, the median over series."""
    names = next(iter(series.values())).keys()
    return {
        name: {key: round(statistics.median(s[name][key] for s in series.values()), 3) for key in KEYS}
        for name in names
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.predictive", description=__doc__)
    parser.add_argument("--only", action="append", help="Only series whose file name contains this (repeatable).")
    parser.add_argument("--set", action="append", default=[], help="Manifest override, as ebb simulate --set.")
    parser.add_argument(
        "--policies",
        help="Comma-separated policies (default: all five; the target needs predictive, keda-default and oracle).",
    )
    parser.add_argument(
        "--median", type=float, default=MEDIAN_PER_5MIN, help="Scale each series to this median 5-minute count."
    )
    parser.add_argument("--jobs", type=int, default=1, help="Series simulated in parallel.")
    parser.add_argument("--markdown", action="store_true", help="Also print the table for docs/performance.md.")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave bench/results alone.")
    args = parser.parse_args(argv)
    if not TRACES.is_dir():
        print(f"predictive: skipped, no traces at {TRACES} (set EBB_TRACES)")
        return {}
    paths = [p for p in count_series(TRACES) if not args.only or any(o in p.name for o in args.only)]
    overrides = tuple(args.set)
    policies = policies_arg(args.policies)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        n = len(paths)
        docs = list(pool.map(one, paths, [overrides] * n, [policies] * n, [args.median] * n))
    series: dict[str, dict[str, dict[str, Any]]] = {}
    per_series: dict[str, Any] = {}
    for path, doc in zip(paths, docs, strict=True):
        policies = {p["name"]: p for p in doc["policies"]}
        series[path.stem] = policies
        if not {"predictive", "keda-default", "oracle"} <= policies.keys():
            print(
                path.stem,
                [(p["name"], p["replica_seconds"], p["cold_starts"], p["wait_p95_s"]) for p in doc["policies"]],
            )
            continue
        per_series[path.stem] = {
            "scale": doc["settings"]["scale"],
            "items": doc["trace"]["items"],
            "days": round(doc["trace"]["duration_s"] / 86400, 1),
            "filled_gaps": doc["trace"].get("filled_gaps", 0),
            "simulation_seconds": doc["seconds"],
            "policies": doc["policies"],
            "predictive_vs_keda_default": compare(policies),
        }
    if not per_series:
        return {}
    median = median_series(series)
    verdict = compare({name: {**m} for name, m in median.items()})
    met = {
        "cold_starts_cut_50pct": (verdict["cold_starts_change_pct"] or 0) <= -50,
        "wait_p95_cut_30pct": (verdict["wait_p95_change_pct"] or 0) <= -30,
        "replica_seconds_at_most_10pct_more": (verdict["replica_seconds_change_pct"] or 0) <= 10,
    }
    result: dict[str, Any] = {
        "method": (
            f"ebb simulate on every count series in ../shared/traces with {MANIFEST.relative_to(ROOT)} "
            f"(+ {list(overrides)}), service rate {SERVICE_RATE}/s per replica, start-up {STARTUP_DELAY:g} s, "
            f"seed {SEED}; each series scaled so its median 5-minute count is {args.median:g} items; "
            f"missing intervals filled with the previous value; walk-forward forecasts only"
        ),
        "series": per_series,
        "median_over_series": median,
        "target_on_median": {**verdict, "met": met},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_write:
        write_result("predictive", result)
    print_table(per_series, median, verdict)
    if args.markdown:
        print(markdown(result))
    return result


def print_table(per_series: dict[str, Any], median: dict[str, dict[str, float]], verdict: dict[str, Any]) -> None:
    print(f"{'series':28} {'policy':13} {'replica-s':>11} {'cold':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for name, s in per_series.items():
        for p in s["policies"]:
            print(
                f"{name:28} {p['name']:13} {p['replica_seconds']:>11,.0f} {p['cold_starts']:>6} "
                f"{p['wait_p50_s']:>7.1f} {p['wait_p95_s']:>7.1f} {p['wait_p99_s']:>7.1f}"
            )
    for pname, m in median.items():
        print(
            f"{'median':28} {pname:13} {m['replica_seconds']:>11,.0f} {m['cold_starts']:>6} "
            f"{m['wait_p50_s']:>7.1f} {m['wait_p95_s']:>7.1f} {m['wait_p99_s']:>7.1f}"
        )
    print(
        f"predictive vs keda-default (median series): cold starts {verdict['cold_starts_change_pct']}%, "
        f"wait p95 {verdict['wait_p95_change_pct']}%, replica-seconds {verdict['replica_seconds_change_pct']}%"
    )


def markdown(result: dict[str, Any]) -> str:
    """The table docs/performance.md shows, from a result of `main`."""
    lines = [
        "| series (scale) | policy | replica-s | cold starts | wait p50 s | wait p95 s | wait p99 s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(f"{n} (x{s['scale']:.3g})", s["policies"]) for n, s in result["series"].items()]
    rows.append(("**median over series**", [{"name": k, **v} for k, v in result["median_over_series"].items()]))
    for label, policies in rows:
        for p in policies:
            lines.append(
                f"| {label} | {p['name']} | {p['replica_seconds']:,.0f} | {p['cold_starts']:,.0f} | "
                f"{p['wait_p50_s']:.1f} | {p['wait_p95_s']:.1f} | {p['wait_p99_s']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
