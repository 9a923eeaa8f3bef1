"""ScaledJob decisions, with the arithmetic of KEDA's algorithm worked by hand in each row."""

from __future__ import annotations

import pytest

from ebb.scaling.jobs import JobStrategy, decide_jobs, replica_bounds
from ebb.scaling.types import MetricType, TriggerResult


def q(
    value: float | None,
    target: float = 1.0,
    *,
    active: bool | None = None,
    name: str = "s0-queue",
    metric_type: MetricType = "AverageValue",
    error: str | None = None,
) -> TriggerResult:
    if active is None:
        active = error is None and value is not None and value > 0
    return TriggerResult(name, target, metric_type, value, active, error)


@pytest.mark.parametrize(
    ("min_r", "max_r", "bounds"),
    [
        (0, None, (0, 100)),  # defaults: max 100
        (2, None, (2, 100)),  # max unset: not reduced by min
        (2, 10, (2, 8)),  # max - min
        (5, 3, (3, 3)),  # min > max: both are max
        (0, 10, (0, 10)),
    ],
)
def test_replica_bounds(min_r: int, max_r: int | None, bounds: tuple[int, int]) -> None:
    assert replica_bounds(min_r, max_r) == bounds


@pytest.mark.parametrize(
    ("case", "results", "running", "pending", "min_r", "max_r", "strategy", "jobs", "queue", "max_scale"),
    [
        # default: effective = maxScale - running; scaleTo = queue.
        # queue 10 / target 1 -> maxScale 10; 10 - 3 running = 7; min(10, 7) = 7.
        ("default", [q(10)], 3, 0, 0, 100, JobStrategy(), 7, 10, 10),
        # target 5 per job: maxScale = ceil(10 / 5) = 2; 2 - 0 = 2; min(scaleTo 10, 2) = 2.
        ("default target 5", [q(10, 5)], 0, 0, 0, 100, JobStrategy(), 2, 10, 2),
        # running covers it: 10 - 12 < 0 -> 0.
        ("default saturated", [q(10)], 12, 0, 0, 100, JobStrategy(), 0, 10, 10),
        # maxScale capped at MaxRC 5: min(10, 5) = 5; 5 - 2 = 3.
        ("default capped by max", [q(10)], 2, 0, 0, 5, JobStrategy(), 3, 10, 5),
        # custom: min(maxScale - deduction - int(running * pct), MaxRC) = min(10 - 1 - int(4 * 0.5), 100) = 7.
        (
            "custom",
            [q(10)],
            4,
            0,
            0,
            100,
            JobStrategy("custom", 1, "0.5"),
            7,
            10,
            10,
        ),
        # int() truncates: 10 - 0 - int(3 * 0.5 = 1.5 -> 1) = 9.
        ("custom truncates", [q(10)], 3, 0, 0, 100, JobStrategy("custom", None, "0.5"), 9, 10, 10),
        # pct 0 ignores running jobs: 10 - 0 - 0 = 10.
        ("custom pct 0", [q(10)], 4, 0, 0, 100, JobStrategy("custom", 0, "0"), 10, 10, 10),
        # Unparsable or unset percentage: KEDA falls back to default: 10 - 4 = 6.
        ("custom unparsable -> default", [q(10)], 4, 0, 0, 100, JobStrategy("custom", 1, "abc"), 6, 10, 10),
        ("custom unset -> default", [q(10)], 4, 0, 0, 100, JobStrategy("custom", 1, None), 6, 10, 10),
        ("custom with spaces -> default", [q(10)], 4, 0, 0, 100, JobStrategy("custom", 1, " 0.5"), 6, 10, 10),
        # accurate: maxScale + running - pending = 6 + 3 - 1 = 8 <= MaxRC 10 -> maxScale - pending = 5.
        ("accurate under max", [q(6)], 3, 1, 0, 10, JobStrategy("accurate"), 5, 6, 6),
        # 10 + 5 - 0 = 15 > 10 -> MaxRC - running = 10 - 5 = 5.
        ("accurate over max", [q(10)], 5, 0, 0, 10, JobStrategy("accurate"), 5, 10, 10),
        # The pending jobs count in the condition: 10 + 5 - 6 = 9 <= 10 -> 10 - 6 = 4.
        ("accurate pending in condition", [q(10)], 5, 6, 0, 10, JobStrategy("accurate"), 4, 10, 10),
        # eager: min(MaxRC - running - pending, maxScale) = min(10 - 2 - 1, 3) = 3; scaleTo MaxRC 10 -> 3.
        ("eager small queue", [q(3)], 2, 1, 0, 10, JobStrategy("eager"), 3, 3, 3),
        # Eager asks for MaxRC, not the queue: queue 3 at 0.5 per job -> maxScale 6; effective
        # min(10 - 2 - 1, 6) = 6; scaleTo 10 -> 6 jobs (the default strategy would stop at scaleTo 3).
        ("eager scale to max", [q(3, 0.5)], 2, 1, 0, 10, JobStrategy("eager"), 6, 3, 6),
        ("default scale to queue", [q(3, 0.5)], 0, 0, 0, 10, JobStrategy(), 3, 3, 6),
        # maxScale = min(20, 10) = 10: min(7, 10) = 7.
        ("eager big queue", [q(20)], 2, 1, 0, 10, JobStrategy("eager"), 7, 20, 10),
        # minReplicaCount: below it, create min - running regardless of the queue (and it forces active).
        ("min keeps jobs", [q(0)], 0, 0, 2, 10, JobStrategy(), 2, 0, 0),
        ("min partly there", [q(0)], 1, 0, 2, 10, JobStrategy(), 1, 0, 0),
        # Above min: running counts from min. MaxRC = 10 - 2 = 8; maxScale = min(20, 8) = 8;
        # r = 5 - 2 = 3; 8 - 3 = 5.
        ("above min", [q(20)], 5, 0, 2, 10, JobStrategy(), 5, 20, 8),
        # max unset: MaxRC 100 (not 100 - min). maxScale = min(150, 100) = 100; r = 0 -> 100.
        ("max unset", [q(150)], 2, 0, 2, None, JobStrategy(), 100, 150, 100),
        # Fractions round up: queue 2.5 -> 3; maxScale ceil(2.5 / 2 = 1.25) = 2.
        ("ceil", [q(2.5, 2)], 0, 0, 0, 100, JobStrategy(), 2, 3, 2),
        # Inactive: nothing, even with room.
        ("inactive", [q(5, active=False)], 0, 0, 0, 100, JobStrategy(), 0, 0, 0),
        # A Value target counts as 0 in KEDA: maxScale 0, no jobs.
        ("Value target gives no jobs", [q(10, 1, metric_type="Value")], 0, 0, 0, 100, JobStrategy(), 0, 10, 0),
        # An erroring trigger is skipped; the other one decides: 4 - 0 = 4.
        (
            "error skipped",
            [q(None, error="timeout", name="s0-a"), q(4, name="s1-b")],
            0,
            0,
            0,
            100,
            JobStrategy(),
            4,
            4,
            4,
        ),
    ],
)
def test_strategies(
    case: str,
    results: list[TriggerResult],
    running: int,
    pending: int,
    min_r: int,
    max_r: int | None,
    strategy: JobStrategy,
    jobs: int,
    queue: int,
    max_scale: int,
) -> None:
    d = decide_jobs(results, running, pending, min_r, max_r, strategy)
    assert (d.jobs_to_create, d.queue_length, d.max_scale) == (jobs, queue, max_scale), case


# Three triggers: a (queue 4, target 1), b (queue 10, target 5), c (queue 20, inactive).
A = q(4, 1, name="s0-a")
B = q(10, 5, name="s1-b")
C = q(20, 1, name="s2-c", active=False)


@pytest.mark.parametrize(
    ("calculation", "results", "queue", "max_scale", "jobs", "active"),
    [
        # max: the active trigger with the longest queue, b: queue 10, maxValue 10/5 = 2 -> 2 jobs.
        ("max", [A, B, C], 10, 2, 2, True),
        # min: the shortest queue among active ones, a: queue 4, maxValue 4 -> 4 jobs.
        ("min", [A, B, C], 4, 4, 4, True),
        # avg: queue (4 + 10) / 2 = 7; maxValue (4 + 2) / 2 = 3 -> 3 jobs.
        ("avg", [A, B, C], 7, 3, 3, True),
        # sum: queue 14; maxValue 4 + 2 = 6 -> 6 jobs.
        ("sum", [A, B, C], 14, 6, 6, True),
        # min skips an empty queue when one is not empty: 0 is taken, then replaced by 6 (queueLength == 0).
        ("min", [q(0, active=True, name="s0-a"), q(6, name="s1-b")], 6, 6, 6, True),
        # max ignores an active trigger whose queue is 0 (0 > 0 is false): not active at all.
        ("max", [q(0, active=True)], 0, 0, 0, False),
        # sum counts it as active.
        ("sum", [q(0, active=True)], 0, 0, 0, True),
        # No active trigger: nothing in any mode.
        ("avg", [C], 0, 0, 0, False),
    ],
)
def test_multiple_scalers_calculation(
    calculation: str, results: list[TriggerResult], queue: int, max_scale: int, jobs: int, active: bool
) -> None:
    strategy = JobStrategy(multiple_scalers_calculation=calculation)  # type: ignore[arg-type]
    d = decide_jobs(results, 0, 0, 0, 100, strategy)
    assert (d.queue_length, d.max_scale, d.jobs_to_create, d.active) == (queue, max_scale, jobs, active)


@pytest.mark.parametrize(
    ("results", "ready", "active"),
    [
        ([q(5)], ("True", "ScaledJobReady"), ("True", "ScalerActive")),
        ([q(5), q(None, error="x", name="s1-b")], ("Unknown", "PartialTriggerError"), ("True", "ScalerActive")),
        ([q(None, error="x")], ("False", "TriggerError"), ("False", "ScalerNotActive")),
        ([q(0)], ("True", "ScaledJobReady"), ("False", "ScalerNotActive")),
    ],
)
def test_conditions(results: list[TriggerResult], ready: tuple[str, str], active: tuple[str, str]) -> None:
    d = decide_jobs(results, 0, 0, 0, 100, JobStrategy())
    assert (d.conditions["Ready"].status, d.conditions["Ready"].reason) == ready
    assert (d.conditions["Active"].status, d.conditions["Active"].reason) == active


def test_reason_and_active_triggers() -> None:
    d = decide_jobs([q(3, name="s0-a"), q(0, name="s1-b")], 0, 0, 0, 10, JobStrategy())
    assert (d.reason, d.jobs_to_create, d.active_triggers) == ("CreateJobs", 3, ("s0-a",))
    full = decide_jobs([q(3)], 3, 0, 0, 10, JobStrategy())
    assert (full.reason, full.jobs_to_create, full.effective_max_scale) == ("NoJobsNeeded", 0, 0)
    idle = decide_jobs([q(0)], 0, 0, 0, 10, JobStrategy())
    assert idle.reason == "ScalerNotActive"


def test_cpu_memory_triggers_are_skipped() -> None:
    cpu = TriggerResult("cpu", 50, "Utilization", 90, True, resource=True)
    d = decide_jobs([cpu], 0, 0, 0, 10, JobStrategy())
    assert (d.jobs_to_create, d.active) == (0, False)
