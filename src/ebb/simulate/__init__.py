"""`ebb simulate`: replay a workload trace through the real decision core and compare scaling policies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebb.simulate.engine import Result, Workload, make_workload, run_policies
from ebb.simulate.manifest import POLICIES, SimulationError, build_policies, load_manifest, setup
from ebb.simulate.trace import GapPolicy, Trace, TraceError, TraceFormat, read_trace

#: Beyond this many arrivals a replay would take minutes: refuse and say to scale down.
MAX_ITEMS = 20_000_000


@dataclass(frozen=True)
class Options:
    trace: Path
    format: TraceFormat = "counts"
    scale: float = 1.0
    service_rate: float = 1.0
    startup_delay: float = 30.0
    seed: int = 0
    overrides: tuple[str, ...] = ()
    policies: tuple[str, ...] = POLICIES
    gaps: GapPolicy = "error"
    object_name: str | None = None


@dataclass
class Report:
    results: list[Result]
    trace: dict[str, Any]
    settings: dict[str, Any]
    workload: Workload
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "policies": [r.to_json() for r in self.results],
            "trace": self.trace,
            "settings": self.settings,
        }


def check_options(opts: Options) -> None:
    for name, value, low in (
        ("--scale", opts.scale, 0.0),
        ("--service-rate", opts.service_rate, 0.0),
        ("--startup-delay", opts.startup_delay, -1.0),
    ):
        if not math.isfinite(value) or value <= low:
            bound = "0 or more" if low < 0 else "more than 0"
            raise SimulationError(f"{name}: expected a finite number {bound}, got {value:g}")
    unknown = [p for p in opts.policies if p not in POLICIES]
    if unknown or not opts.policies:
        raise SimulationError(
            f"--policies: unknown policy {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"expected some of {', '.join(POLICIES)}"
        )


def load_workload(opts: Options, trace: Trace | None = None) -> tuple[Trace, Workload]:
    trace = trace or read_trace(opts.trace, opts.format, opts.gaps)
    expected = float(trace.counts.sum()) * opts.scale if trace.counts is not None else 0.0
    if trace.arrivals is not None:
        expected = len(trace.arrivals) * opts.scale
    if expected > MAX_ITEMS:
        raise SimulationError(
            f"{trace.path}: the trace scaled by {opts.scale:g} has about {expected:,.0f} items, more than "
            f"{MAX_ITEMS:,}; pass a smaller --scale"
        )
    workload = make_workload(trace.counts, trace.arrivals, trace.interval, opts.scale, opts.seed, trace.start)
    return trace, workload


def simulate(manifest: Path, opts: Options, trace: Trace | None = None) -> Report:
    """Run every policy of `opts` over the trace. Raises SimulationError or TraceError with a clear message."""
    check_options(opts)
    so, resources = load_manifest(manifest, opts.overrides, opts.object_name)
    st = setup(so, resources)
    trace, workload = load_workload(opts, trace)
    policies = build_policies(st, opts.policies, workload, opts.service_rate, opts.startup_delay)
    results = run_policies(policies, workload, opts.service_rate, opts.startup_delay)
    pol = st.base.policy
    settings: dict[str, Any] = {
        "manifest": str(manifest),
        "object": so.ref,
        "scale": opts.scale,
        "service_rate": opts.service_rate,
        "startup_delay": opts.startup_delay,
        "seed": opts.seed,
        "set": list(opts.overrides),
        "polling_interval": pol.polling_interval,
        "cooldown_period": pol.cooldown_period,
        "min_replicas": pol.min_replicas,
        "max_replicas": pol.max_replicas,
        "triggers": [
            {"metric": t.metric_name, "target": t.target, "activation": t.activation, "reads": t.reads}
            for t in st.base.triggers
        ],
        "push": st.base.push,
        "predictive": {
            "horizon_s": st.predictive.horizon,
            "model": st.predictive.model,
            "band": st.predictive.band,
            "max_error": st.predictive.max_error,
            "probability": st.predictive.probability,
            "lead_s": st.predictive.activation_lead,
            "hold": st.predictive.hold,
            "recent_s": st.predictive.recent,
            "prior_s": st.predictive.prior,
        },
    }
    info = trace.describe()
    info["items"] = len(workload.arrivals)
    return Report(results, info, settings, workload)


def policies_arg(raw: str | None) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return POLICIES
    return tuple(p.strip() for p in raw.split(",") if p.strip())


__all__ = ["POLICIES", "Options", "Report", "SimulationError", "TraceError", "policies_arg", "simulate"]
