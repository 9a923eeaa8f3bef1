"""The replay: deterministic per seed, decided by the real core, walk-forward, with the documented semantics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ebb.scaling.forecast import PredictiveSettings
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import ObjectPolicy
from ebb.simulate import Options, simulate
from ebb.simulate.engine import (
    CorePolicy,
    Predictor,
    SimTrigger,
    Workload,
    _Forecasting,
    make_workload,
    run_core,
)

MANIFEST = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: worker}}
  pollingInterval: 10
  cooldownPeriod: 60
  maxReplicaCount: 10
  triggers:
    - type: {trigger}
      metadata: {metadata}
"""
REDIS = "{address: 'localhost:6379', listName: jobs, listLength: '5'}"
POSTGRES = (
    "{host: localhost, port: '5432', sslmode: disable, userName: u, dbName: d, query: 'select 1', "
    "targetQueryValue: '5'}"
)


def manifest(tmp_path: Path, trigger: str = "redis", metadata: str = REDIS) -> Path:
    path = tmp_path / "so.yaml"
    path.write_text(MANIFEST.format(trigger=trigger, metadata=metadata))
    return path


def daily_trace(tmp_path: Path, days: int = 10, seed: int = 3) -> Path:
    """Synthetic 5-minute counts: busy days, empty nights, weekends quieter."""
    rng = np.random.default_rng(seed)
    lines = ["timestamp,value"]
    for i in range(days * 288):
        hour = (i % 288) / 12
        busy = 8 <= hour < 18
        level = (6.0 if (i // 288) % 7 < 5 else 2.0) if busy else 0.0
        lines.append(f"{1425168000 + 300 * i},{rng.poisson(level)}")
    path = tmp_path / "daily.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_item_workload(at: float, duration: float = 600.0) -> Workload:
    return Workload(np.asarray([at]), 300.0, duration)


def policy(push: bool, predictor: Predictor | None = None) -> CorePolicy:
    return CorePolicy(
        "manifest",
        ObjectPolicy(max_replicas=10, polling_interval=10.0, cooldown_period=60.0),
        (SimTrigger("s0-redis", 5.0, 0.0),),
        push=push,
        predictor=predictor,
    )


@pytest.mark.parametrize(
    ("push", "wait", "replica_seconds"),
    [
        # polled at 100, ready at 130; the poll at 130 still sees the item (it starts at 130), so the object is
        # last active at 130 and deactivated at the first poll after 130 + 60: 200
        (False, 35.0, 100.0),
        # a push trigger polls as the item arrives (95), ready at 125, last active at 125, off at 195
        (True, 30.0, 100.0),
    ],
)
def test_one_item_cold_start(push: bool, wait: float, replica_seconds: float) -> None:
    result = run_core(policy(push), one_item_workload(95.0), service_rate=1.0, startup_delay=30.0)
    assert result.cold_starts == 1
    assert result.items_waiting_at_zero == 1
    assert result.wait_max_s == pytest.approx(wait)
    assert result.replica_seconds == pytest.approx(replica_seconds)
    assert result.peak_replicas == 1
    assert result.scaling_actions == 2


def test_backlog_drains_at_the_service_rate() -> None:
    # 20 items at 100: activation brings one replica (KEDA activates to max(min, 1)), which starts 10 items
    # by the next poll (1 item/s); then the HPA asks ceil(10 / 5) = 2, which start the other 10 at 2 items/s
    arrivals = np.full(20, 100.0)
    result = run_core(policy(True), Workload(arrivals, 300.0, 900.0), service_rate=1.0, startup_delay=0.0)
    assert result.replica_steps[:3] == [(0.0, 0), (100.0, 1), (110.0, 2)]
    assert result.peak_replicas == 2
    assert result.wait_max_s == pytest.approx(14.5)


def test_every_decision_goes_through_the_real_decider(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = ScaledObjectDecider.decide

    def spy(self: ScaledObjectDecider, *args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ScaledObjectDecider, "decide", spy)
    result = run_core(policy(False), one_item_workload(95.0), service_rate=1.0, startup_delay=30.0)
    assert result.scaling_actions == 2
    assert calls[:2] == [0.0, 100.0]  # the quiet start is skipped to the first poll that can see the item
    assert calls == sorted(calls)


def test_same_seed_same_result_other_seed_other_arrivals(tmp_path: Path) -> None:
    so, trace = manifest(tmp_path), daily_trace(tmp_path, days=3)
    opts = Options(trace, service_rate=0.5, policies=("manifest", "oracle", "fixed-p99"), seed=7)
    first = simulate(so, opts).to_json()
    again = simulate(so, opts).to_json()
    other = simulate(so, Options(trace, service_rate=0.5, policies=("manifest", "oracle", "fixed-p99"), seed=8))
    assert first == again
    assert first["policies"] != other.to_json()["policies"]
    assert first["policies"][0]["items"] == other.to_json()["policies"][0]["items"]  # counts are kept exactly


def test_counts_are_spread_within_their_interval() -> None:
    w = make_workload(np.asarray([3.0, 0.0, 2.5]), None, 300.0, 1.0, seed=1)
    assert len(w.arrivals) in (5, 6)
    assert (w.arrivals[:3] < 300).all() and (w.arrivals[3:] >= 600).all()
    assert list(w.arrivals) == sorted(w.arrivals)


def test_json_shape_and_keys(tmp_path: Path) -> None:
    doc = simulate(manifest(tmp_path), Options(daily_trace(tmp_path, days=2), service_rate=0.5)).to_json()
    assert set(doc) == {"policies", "trace", "settings"}
    assert [p["name"] for p in doc["policies"]] == ["manifest", "keda-default", "predictive", "oracle", "fixed-p99"]
    keys = {
        "replica_seconds", "peak_replicas", "scaling_actions", "items", "cold_starts", "items_waiting_at_zero",
        "wait_p50_s", "wait_p95_s", "wait_p99_s", "wait_max_s", "backlog_over_target_fraction",
    }  # fmt: skip
    for p in doc["policies"]:
        assert keys <= set(p)
    oracle = doc["policies"][3]
    assert oracle["cold_starts"] == 0 and oracle["items_waiting_at_zero"] == 0
    fixed = doc["policies"][4]
    assert fixed["scaling_actions"] == 1 and fixed["peak_replicas"] >= 1


def test_keda_default_polls_every_30s_and_cools_down_300s() -> None:
    # Without push, the item at 100 is seen by the poll at 120 (30 s grid) and the pool lives 300 s after
    result = run_core(
        CorePolicy(
            "keda-default",
            ObjectPolicy(max_replicas=10, polling_interval=30.0, cooldown_period=300.0),
            (SimTrigger("s0-redis", 5.0, 0.0),),
        ),
        one_item_workload(100.0, 1200.0),
        service_rate=1.0,
        startup_delay=30.0,
    )
    assert result.wait_max_s == pytest.approx(50.0)
    # active at 120 and 150 (the item starts at 150), off at the first poll after 450: 480
    assert result.replica_seconds == pytest.approx(480.0 - 120.0)


def test_the_replay_never_looks_ahead_of_its_clock() -> None:
    """Decisions and forecasts up to time T are the same whatever happens after T."""
    rng = np.random.default_rng(5)
    days = 9
    base = []
    for day in range(days):
        for hour in range(8, 18):
            base.extend(day * 86400 + hour * 3600 + rng.random(20) * 3600)
    arrivals = np.sort(np.asarray(base))
    cut = 7.5 * 86400
    future = arrivals[arrivals >= cut]
    changed = np.sort(np.concatenate([arrivals[arrivals < cut], future[::3] + 7, cut + rng.random(500) * 86400]))
    predictor = Predictor(PredictiveSettings(horizon=600.0), threshold=1.0, activation=0.001)

    def decisions(arr: np.ndarray) -> tuple[list[tuple[float, int]], list[tuple[float, float, float]]]:
        seen: list[tuple[float, int]] = []
        result = run_core(
            policy(False, predictor),
            Workload(arr, 300.0, days * 86400.0),
            service_rate=0.2,
            startup_delay=30.0,
            on_decision=lambda t, n: seen.append((t, n)),
        )
        return seen, result.forecast

    a, fa = decisions(arrivals)
    b, fb = decisions(changed)
    before = [d for d in a if d[0] < cut]
    assert len(before) > 10
    assert before == [d for d in b if d[0] < cut]
    assert [f for f in fa if f[0] < cut] == [f for f in fb if f[0] < cut]
    assert a != b  # the future did change what happened after T


def test_predictive_pre_activates_before_the_morning() -> None:
    """On a regular daily pattern, prediction starts the pool before the first item of the day."""
    rng = np.random.default_rng(2)
    arrivals = np.sort(np.concatenate([d * 86400 + 9 * 3600 + rng.random(60) * 8 * 3600 for d in range(10)]))
    workload = Workload(arrivals, 300.0, 10 * 86400.0)
    reactive = run_core(policy(False), workload, 0.2, 30.0)
    predictor = Predictor(PredictiveSettings(horizon=600.0), threshold=0.2, activation=0.001)
    predictive = run_core(policy(False, predictor), workload, 0.2, 30.0)
    assert reactive.cold_starts >= 10
    # after the first week of history the morning is forecast: at most the first days start cold
    assert predictive.cold_starts < reactive.cold_starts / 2
    assert predictive.wait_p95_s < reactive.wait_p95_s
    assert not math.isnan(predictive.wait_p99_s)


def test_hold_forecast_releases_at_once_when_nothing_waits_and_nothing_is_forecast() -> None:
    """One item in an empty day: with hold=forecast the pool stops at the first poll after the item started
    (no work forecast, nothing waiting) instead of waiting out cooldownPeriod; the item is served the same."""
    workload = Workload(np.asarray([86400.0 + 95.0]), 300.0, 86400.0 + 600.0)
    results = {}
    for hold in ("cooldown", "forecast"):
        settings = PredictiveSettings(horizon=600.0, hold=hold)  # type: ignore[arg-type]
        predictor = Predictor(settings, threshold=1.0, activation=1.0)  # no forecast of this day reaches 1/s
        results[hold] = run_core(policy(True, predictor), workload, service_rate=1.0, startup_delay=30.0)
    cooled, held = results["cooldown"], results["forecast"]
    assert held.wait_max_s == cooled.wait_max_s == pytest.approx(30.0)  # the item waits the same start-up
    # off at the first poll after it started (ready at 125, polls at 125 and 135): 135 - 95 = 40 s against 100
    assert cooled.replica_seconds == pytest.approx(100.0)
    assert held.replica_seconds == pytest.approx(40.0)


def test_a_recent_item_raises_the_rate_activation_compares() -> None:
    """recent=5m: the forecast rate (here 0: an empty history) blended with the items of the last 5 minutes."""
    settings = PredictiveSettings(horizon=600.0, recent=300.0, prior=300.0)
    forecasting = _Forecasting(Predictor(settings, threshold=1.0, activation=0.001), np.zeros(10), 300.0, 30.0)
    forecasting.at(600.0)
    assert forecasting.expected_at(600.0, 0) == 0.0
    assert forecasting.expected_at(600.0, 3) == pytest.approx(3 / 600.0)  # (0 x 300 + 3) / (300 + 300)
