"""Replay a workload through the real decision core on a virtual clock.

A FIFO queue is drained by the ready replicas, each serving `service_rate` items per second (a fluid pool:
with n ready replicas the next item starts 1/(n x rate) seconds after the previous one). A replica is ready
`startup_delay` seconds after it starts; scaling in stops the youngest replicas first. Polls happen on the
object's pollingInterval grid (or at once when a push trigger sees work for an idle object), and each poll
calls `ScaledObjectDecider.decide` exactly as `ScaledObjectLoop.poll_once` does.

Polls that provably change nothing (no replicas, no backlog, nothing active, nothing forecast) are skipped to
the next poll that could see work: the decider would return the same inactive decision and keep the same
state, so the result is identical and a quiet night costs nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ebb.runtime.scaled_object import PUSH_MIN_GAP
from ebb.scaling.forecast import ForecastGuard, PredictiveSettings, make_forecaster
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import MetricType, ObjectPolicy, PauseState, TriggerResult

Array = npt.NDArray[np.float64]

#: Sampling step (seconds) of backlog_over_target_fraction and of the plot's series.
SAMPLE_STEP = 10.0


@dataclass(frozen=True)
class Workload:
    """Arrival times (seconds from the trace's start, sorted) and their counts per `interval` bucket."""

    arrivals: Array
    interval: float
    duration: float
    start: float = 0.0

    @property
    def buckets(self) -> Array:
        n = max(1, math.ceil(self.duration / self.interval))
        counts, _ = np.histogram(self.arrivals, bins=n, range=(0.0, n * self.interval))
        return counts.astype(np.float64)


@dataclass(frozen=True)
class SimTrigger:
    """One trigger as the simulator feeds it: what it reads ("backlog" or "rate") and its target."""

    metric_name: str
    target: float
    activation: float
    reads: str = "backlog"
    metric_type: MetricType = "AverageValue"
    trigger_name: str | None = None


@dataclass(frozen=True)
class Predictor:
    """Prediction for a policy: forecast the arrival rate and add it as one more metric to every decision."""

    settings: PredictiveSettings
    threshold: float
    activation: float
    metric_name: str = "predictive"


@dataclass(frozen=True)
class CorePolicy:
    """A policy decided by the real core: the ScaledObject's rules, triggers, polling and push."""

    name: str
    policy: ObjectPolicy
    triggers: tuple[SimTrigger, ...]
    push: bool = False
    idle_polling_interval: float | None = None
    pause: PauseState = PauseState()  # noqa: RUF009 - frozen dataclass
    predictor: Predictor | None = None


@dataclass(frozen=True)
class SchedulePolicy:
    """A policy that sets replicas by itself at given times (oracle, fixed pool); `lead` seconds of start-up
    are charged before each added replica, which is ready at once (it was started `lead` seconds earlier)."""

    name: str
    times: tuple[float, ...]
    replicas: tuple[int, ...]
    lead: float = 0.0
    target: float = 1.0


@dataclass
class Result:
    name: str
    replica_seconds: float
    peak_replicas: int
    scaling_actions: int
    items: int
    cold_starts: int
    items_waiting_at_zero: int
    wait_p50_s: float
    wait_p95_s: float
    wait_p99_s: float
    wait_max_s: float
    backlog_over_target_fraction: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: (time, replicas) after each change, for plots.
    replica_steps: list[tuple[float, int]] = field(default_factory=list)
    #: (time, forecast rate) per forecast bucket, for plots (predictive policies only).
    forecast: list[tuple[float, float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in (
            "replica_seconds",
            "peak_replicas",
            "scaling_actions",
            "items",
            "cold_starts",
            "items_waiting_at_zero",
            "wait_p50_s",
            "wait_p95_s",
            "wait_p99_s",
            "wait_max_s",
            "backlog_over_target_fraction",
        ):
            value = getattr(self, key)
            out[key] = round(value, 4) if isinstance(value, float) else value
        out.update(self.extra)
        return out


class _Sim:
    """The queue and the replicas of one policy's run."""

    def __init__(self, workload: Workload, service_rate: float, startup_delay: float) -> None:
        self.arr: list[float] = workload.arrivals.tolist()
        self.n = len(self.arr)
        self.end = workload.duration
        self.rate = service_rate
        self.delay = startup_delay
        self.starts: list[float] = [math.nan] * self.n
        self.head = 0
        self.free_at = 0.0
        self.clock = 0.0
        self.ready_at: list[float] = []  # one per replica, ascending
        self.ready_log: list[tuple[float, int]] = []
        self.count_log: list[tuple[float, int]] = [(0.0, 0)]
        self.waiting_at_zero = 0
        self.actions = 0
        self.peak = 0
        self.extra_replica_seconds = 0.0

    # --- queue ---------------------------------------------------------------------------------------

    def advance(self, until: float) -> None:
        """Serve the queue from the current clock up to `until`, segment by segment of constant capacity."""
        t = self.clock
        if until <= t:
            return
        ready_at = self.ready_at
        i = bisect_right(ready_at, t)
        while t < until:
            nxt = ready_at[i] if i < len(ready_at) and ready_at[i] < until else until
            self._serve(t, nxt, i * self.rate)
            t = nxt
            i += 1 if nxt < until else 0
            while i < len(ready_at) and ready_at[i] <= t and t < until:
                i += 1
        self.clock = until

    def _serve(self, a: float, b: float, capacity: float) -> None:
        arr, j, n = self.arr, self.head, self.n
        if capacity <= 0:
            k = bisect_right(arr, b, lo=j)
            # items arriving while nothing is ready (only those not already waiting)
            self.waiting_at_zero += k - bisect_right(arr, a, lo=j)
            if self.free_at < b:
                self.free_at = b
            return
        s = self.free_at if self.free_at > a else a
        dt = 1.0 / capacity
        starts = self.starts
        while j < n:
            x = arr[j]
            if x >= b:
                break
            st = s if s > x else x
            if st >= b:
                break
            starts[j] = st
            s = st + dt
            j += 1
        self.head = j
        self.free_at = s

    def arrived(self, t: float) -> int:
        return bisect_right(self.arr, t)

    def backlog(self, t: float) -> int:
        return self.arrived(t) - self.head

    def next_arrival_after(self, t: float) -> float | None:
        k = bisect_right(self.arr, t)
        return self.arr[k] if k < self.n else None

    # --- replicas ------------------------------------------------------------------------------------

    @property
    def replicas(self) -> int:
        return len(self.ready_at)

    def ready(self, t: float) -> int:
        return bisect_right(self.ready_at, t)

    def scale(self, t: float, desired: int, delay: float | None = None) -> None:
        current = len(self.ready_at)
        if desired == current:
            return
        self.actions += 1
        delay = self.delay if delay is None else delay
        if desired > current:
            for _ in range(desired - current):
                self.ready_at.append(t + delay)
                self.ready_log.append((t + delay, 1))
        else:
            for _ in range(current - desired):
                r = self.ready_at.pop()
                if r <= t:
                    self.ready_log.append((t, -1))
                else:  # never became ready: cancel its readiness
                    self.ready_log.append((r, -1))
        self.count_log.append((t, desired))
        self.peak = max(self.peak, desired)

    # --- results -------------------------------------------------------------------------------------

    def result(self, name: str, cold_starts: int, target: float) -> Result:
        self.advance(self.end)
        arr = np.asarray(self.arr)
        starts = np.asarray(self.starts)
        unserved = np.isnan(starts)
        starts[unserved] = self.end  # still waiting at the end: counted up to the end
        waits = starts - arr if self.n else np.zeros(1)
        p50, p95, p99 = (float(x) for x in np.percentile(waits, [50, 95, 99])) if self.n else (0.0, 0.0, 0.0)
        # replica seconds: integral of the replica count
        times = [t for t, _ in self.count_log] + [self.end]
        counts = [c for _, c in self.count_log]
        rs = sum(c * (min(b, self.end) - min(a, self.end)) for a, b, c in zip(times, times[1:], counts, strict=False))
        grid = np.arange(0.0, self.end, SAMPLE_STEP)
        backlog = np.searchsorted(arr, grid, side="right") - np.searchsorted(np.sort(starts), grid, side="right")
        ready = self._ready_on(grid)
        over = backlog > target * ready
        return Result(
            name=name,
            replica_seconds=rs + self.extra_replica_seconds,
            peak_replicas=self.peak,
            scaling_actions=self.actions,
            items=self.n,
            cold_starts=cold_starts,
            items_waiting_at_zero=self.waiting_at_zero,
            wait_p50_s=p50,
            wait_p95_s=p95,
            wait_p99_s=p99,
            wait_max_s=float(waits.max()) if self.n else 0.0,
            backlog_over_target_fraction=float(over.mean()) if len(grid) else 0.0,
            replica_steps=[(t, c) for t, c in self.count_log],
        )

    def _ready_on(self, grid: Array) -> npt.NDArray[np.int64]:
        if not self.ready_log:
            return np.zeros(len(grid), dtype=np.int64)
        log = sorted(self.ready_log)
        t = np.asarray([x for x, _ in log])
        d = np.cumsum([y for _, y in log])
        idx = np.searchsorted(t, grid, side="right") - 1
        out = np.where(idx >= 0, d[np.maximum(idx, 0)], 0)
        return out.astype(np.int64)


class _Forecasting:
    """Walk-forward forecasts of the arrival rate: at time t only buckets that ended by t are observed."""

    def __init__(self, predictor: Predictor, buckets: Array, interval: float, startup_delay: float) -> None:
        self.p = predictor
        self.buckets = buckets
        self.interval = interval
        self.model = make_forecaster(predictor.settings.model, interval)
        self.guard = ForecastGuard(
            max_error=predictor.settings.max_error, resume_error=predictor.settings.max_error * 0.7
        )
        self.steps = max(1, math.ceil((predictor.settings.horizon + startup_delay) / interval)) + 1
        self.act_steps = max(1, math.ceil((predictor.settings.activation_lead + startup_delay) / interval)) + 1
        self.seen = 0
        self.bucket = -1
        self.value = 0.0
        self.expected = 0.0
        self.point: dict[int, float] = {}
        self.rates: list[float] = []
        self.startup_delay = startup_delay
        self.log: list[tuple[float, float, float]] = []
        self.guard_switches = 0
        self.off_buckets = 0

    def at(self, t: float) -> float:
        """The predicted rate (items/s) to size for at time t; 0 while the guard has prediction off."""
        b = int(t // self.interval)
        if b != self.bucket:
            while self.seen < b:
                actual = float(self.buckets[self.seen]) if self.seen < len(self.buckets) else 0.0
                predicted = self.point.get(self.seen)
                if predicted is not None and self.guard.record(predicted, actual) is not None:
                    self.guard_switches += 1
                self.model.observe(actual)
                self.seen += 1
            fc = self.model.forecast(max(self.steps, self.act_steps))
            self.point[b] = fc.mean[0]
            peak = fc.peak(self.steps, self.p.settings.band) / self.interval
            self.value = peak if self.guard.enabled else 0.0
            # activation follows the point forecast: the band sizes the pool, it does not wake it
            self.expected = fc.peak(self.act_steps, "mean") / self.interval if self.guard.enabled else 0.0
            self.rates = [m / self.interval for m in fc.mean]
            self.off_buckets += 0 if self.guard.enabled else 1
            self.log.append((b * self.interval, fc.mean[0] / self.interval, fc.upper[0] / self.interval))
            self.bucket = b
        return self.value

    def expected_at(self, t: float, recent: int) -> float:
        """The rate activation compares: this step's forecast blended with the `recent` arrivals seen in the
        last `settings.recent` seconds (a Gamma prior of weight `settings.prior` seconds updated by a Poisson
        count: (rate x prior + recent) / (prior + window)), or a later step's forecast if it starts within
        `lead` + start-up delay. 0 while the guard has prediction off."""
        if not self.guard.enabled or not self.rates:
            return 0.0
        settings = self.p.settings
        now = self.rates[0]
        if settings.recent > 0:
            now = (now * settings.prior + recent) / (settings.prior + settings.recent)
        b = int(t // self.interval)
        reach = t + settings.activation_lead + self.startup_delay
        later = [r for k, r in enumerate(self.rates[1:], 1) if (b + k) * self.interval < reach]
        return max([now, *later])

    def next_change(self, t: float) -> float:
        return (int(t // self.interval) + 1) * self.interval


def run_core(
    policy: CorePolicy,
    workload: Workload,
    service_rate: float,
    startup_delay: float,
    *,
    obj: str = "ScaledObject simulated",
    on_decision: Callable[[float, int], None] | None = None,
) -> Result:
    """Replay `workload` through a fresh ScaledObjectDecider with `policy`."""
    sim = _Sim(workload, service_rate, startup_delay)
    decider = ScaledObjectDecider(policy.policy, mode="direct", obj=obj)
    pol = policy.policy
    interval = pol.polling_interval
    idle_replicas = pol.idle_replicas or 0
    forecasting = (
        _Forecasting(policy.predictor, workload.buckets, workload.interval, startup_delay)
        if policy.predictor is not None
        else None
    )
    observe_only = policy.predictor is not None and policy.predictor.settings.mode == "observe"
    cold_starts = 0
    end = workload.duration
    t = 0.0
    reactive_target = policy.triggers[0].target if policy.triggers else 1.0
    window_start = 0.0
    arrived_at_last = 0
    pushed = False  # whether the poll at t was woken by a push (the 50 ms gap follows only those)
    while t < end:
        sim.advance(t)
        backlog = sim.backlog(t)
        arrived = sim.arrived(t)
        results: list[TriggerResult] = []
        for trig in policy.triggers:
            if trig.reads == "rate":
                span = t - window_start
                value = (arrived - arrived_at_last) / span if span > 0 else 0.0
            else:
                value = float(backlog)
            results.append(
                TriggerResult(
                    metric_name=trig.metric_name,
                    target=trig.target,
                    metric_type=trig.metric_type,
                    value=value,
                    active=value > trig.activation,
                    trigger_name=trig.trigger_name,
                )
            )
        predicted_active = False
        if forecasting is not None and policy.predictor is not None:
            rate = forecasting.at(t)
            window = policy.predictor.settings.recent
            recent = arrived - sim.arrived(t - window) if window > 0 else 0
            predicted_active = forecasting.expected_at(t, recent) > policy.predictor.activation
            if not observe_only:
                results.append(
                    TriggerResult(
                        metric_name=policy.predictor.metric_name,
                        target=policy.predictor.threshold,
                        value=rate,
                        active=predicted_active,
                    )
                )
        window_start, arrived_at_last = t, arrived
        current = sim.replicas
        hold: float | None = None
        if (
            forecasting is not None
            and policy.predictor is not None
            and not observe_only
            and policy.predictor.settings.hold == "forecast"
            and forecasting.guard.enabled
            and not predicted_active
            and backlog == 0
        ):
            hold = 0.0  # nothing waits and no work is forecast: no reason to keep a replica warm
        decision = decider.decide(
            results, current, t, pause=policy.pause, ready_replicas=sim.ready(t), cooldown_period=hold
        )
        desired = current if decision.desired_replicas is None else decision.desired_replicas
        if desired != current:
            if current == 0 and backlog > 0:
                cold_starts += 1
            sim.scale(t, desired)
            if on_decision is not None:
                on_decision(t, desired)
        idle = desired <= idle_replicas
        step = interval
        if idle and policy.idle_polling_interval is not None:
            step = min(interval, policy.idle_polling_interval)
        nxt = t + step
        quiet = desired == 0 and backlog == 0 and not decision.active and not policy.pause.paused
        if quiet and not (predicted_active and not observe_only):
            # Nothing can change before work arrives (or, with a forecast, before the next forecast).
            wake = sim.next_arrival_after(t)
            horizon = end if wake is None else wake
            if forecasting is not None:
                horizon = min(horizon, forecasting.next_change(t))
            if horizon > nxt:
                nxt = t + step * math.ceil((horizon - t) / step)
        woken = False
        if policy.push and idle:
            wake = sim.next_arrival_after(t)
            if wake is not None and wake < nxt:
                nxt = max(wake, t + PUSH_MIN_GAP) if pushed else wake
                woken = True
        pushed = woken
        t = nxt
    result = sim.result(policy.name, cold_starts, reactive_target)
    if forecasting is not None:
        result.extra["forecast_guard_switches"] = forecasting.guard_switches
        result.extra["forecast_off_fraction"] = round(forecasting.off_buckets / max(1, len(forecasting.log)), 4)
        result.forecast = forecasting.log
    return result


def run_schedule(policy: SchedulePolicy, workload: Workload, service_rate: float) -> Result:
    """Replay `workload` with replicas set at fixed times (ready at once, start-up charged ahead)."""
    sim = _Sim(workload, service_rate, 0.0)
    cold_starts = 0
    for t, n in zip(policy.times, policy.replicas, strict=True):
        sim.advance(t)
        current = sim.replicas
        if n > current:
            sim.extra_replica_seconds += policy.lead * (n - current)
            if current == 0 and sim.backlog(t) > 0:
                cold_starts += 1
        sim.scale(t, n, delay=0.0)
    return sim.result(policy.name, cold_starts, policy.target)


@dataclass(frozen=True)
class OraclePolicy:
    """Knows the future arrivals: see `run_oracle`."""

    name: str
    step: float
    max_replicas: int
    target: float


def run_oracle(policy: OraclePolicy, workload: Workload, service_rate: float, startup_delay: float) -> Result:
    """The limit: at each `step`, exactly the replicas that serve what is waiting plus the step's arrivals
    within the step, each started `startup_delay` ahead (ready at once, start-up charged); a replica needed
    again within its start-up time is kept rather than restarted."""
    sim = _Sim(workload, service_rate, 0.0)
    step = policy.step
    n = max(1, math.ceil(workload.duration / step))
    counts, _ = np.histogram(workload.arrivals, bins=n, range=(0.0, n * step))
    per_replica = service_rate * step
    plain = np.minimum(np.ceil(counts / per_replica), policy.max_replicas).astype(np.int64)
    keep = max(0, math.ceil(startup_delay / step))
    if keep:
        padded = np.concatenate([plain, np.zeros(keep, dtype=np.int64)])
        ahead = np.lib.stride_tricks.sliding_window_view(padded, keep + 1).max(axis=1)[:n].tolist()
    else:
        ahead = plain.tolist()
    cold_starts = 0
    for i, c in enumerate(counts.tolist()):
        t = i * step
        sim.advance(t)
        waiting = sim.backlog(t)
        k = min(policy.max_replicas, math.ceil((waiting + c) / per_replica - 1e-9))
        k = max(k, int(ahead[i]), 1 if waiting else 0)
        current = sim.replicas
        if k > current:
            sim.extra_replica_seconds += startup_delay * (k - current)
            if current == 0 and waiting > 0:
                cold_starts += 1
        sim.scale(t, k, delay=0.0)
    return sim.result(policy.name, cold_starts, policy.target)


def oracle_policy(step: float, max_replicas: int, target: float) -> OraclePolicy:
    return OraclePolicy("oracle", step, max_replicas, target)


def fixed_schedule(workload: Workload, service_rate: float, max_replicas: int, target: float) -> SchedulePolicy:
    """A constant pool sized for the p99 of the per-interval arrival rate (at least one replica)."""
    rates = workload.buckets / workload.interval
    p99 = float(np.percentile(rates, 99)) if len(rates) else 0.0
    n = min(max_replicas, max(1, math.ceil(p99 / service_rate)))
    return SchedulePolicy("fixed-p99", (0.0,), (n,), target=target)


def percentile_rate(workload: Workload, q: float) -> float:
    rates = workload.buckets / workload.interval
    return float(np.percentile(rates, q)) if len(rates) else 0.0


def make_workload(
    counts: Array | None,
    arrivals: Array | None,
    interval: float,
    scale: float,
    seed: int,
    start: float = 0.0,
    duration: float | None = None,
) -> Workload:
    """Arrival times from counts (each interval's scaled count spread uniformly at random, i.e. a Poisson
    process given its count; a fractional count rounds up with probability equal to its fraction) or from
    real timestamps (thinned for a scale below 1, each repeated a Poisson(scale) number of times above)."""
    rng = np.random.default_rng(seed)
    if counts is not None:
        scaled = counts * scale
        whole = np.floor(scaled)
        k = (whole + (rng.random(len(scaled)) < (scaled - whole))).astype(np.int64)
        idx = np.repeat(np.arange(len(k)), k)
        times = idx * interval + rng.random(len(idx)) * interval
        times.sort()
        return Workload(times, interval, duration or len(counts) * interval, start)
    assert arrivals is not None
    if scale == 1.0:
        times = arrivals.copy()
    elif scale < 1.0:
        times = arrivals[rng.random(len(arrivals)) < scale]
    else:
        reps = rng.poisson(scale, len(arrivals))
        times = np.repeat(arrivals, reps) + rng.random(int(reps.sum()))
        times.sort()
    total = duration or float(math.ceil((float(arrivals[-1]) + 1e-9) / interval) * interval)
    return Workload(times[times < total], interval, total, start)


Policy = CorePolicy | SchedulePolicy | OraclePolicy


def run_policies(
    policies: Sequence[Policy], workload: Workload, service_rate: float, startup_delay: float
) -> list[Result]:
    out = []
    for p in policies:
        if isinstance(p, CorePolicy):
            out.append(run_core(p, workload, service_rate, startup_delay))
        elif isinstance(p, OraclePolicy):
            out.append(run_oracle(p, workload, service_rate, startup_delay))
        else:
            out.append(run_schedule(p, workload, service_rate))
    return out
