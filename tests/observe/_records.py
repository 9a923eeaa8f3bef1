"""Synthetic PollRecords for observer tests (and the dashboard's browser test)."""

from __future__ import annotations

from ebb.runtime.observer import ObjectRef, PollRecord
from ebb.scaling.types import Condition, Decision, TriggerResult

SO = ObjectRef("ScaledObject", "shop", "orders")


def trigger(
    index: int, value: float | None, *, active: bool = False, error: str | None = None, name: str | None = None
) -> TriggerResult:
    return TriggerResult(
        metric_name=f"s{index}-redis-orders", target=5.0, value=value, active=active, error=error, trigger_name=name
    )


def poll(
    ref: ObjectRef,
    t: float,
    triggers: tuple[TriggerResult, ...],
    *,
    current: int,
    desired: int,
    ready: int | None = None,
    active: bool | None = None,
    paused: bool = False,
    lateness: float = 0.0,
    read_seconds: float = 0.0,
) -> PollRecord:
    decision = Decision(
        desired_replicas=desired,
        active=any(r.active for r in triggers) if active is None else active,
        reason="test",
        conditions={"Paused": Condition("True" if paused else "False", "x")},
    )
    return PollRecord(
        ref=ref,
        time=t,
        triggers=triggers,
        decision=decision if ref.kind == "ScaledObject" else None,
        current_replicas=current,
        desired_replicas=desired,
        ready_replicas=current if ready is None else ready,
        lateness=lateness,
        read_seconds=read_seconds,
    )


def burst(ref: ObjectRef, start: float, *, step: float = 10.0, polls: int = 60) -> list[PollRecord]:
    """Idle, a backlog that scales 0 -> 4 and back to 0, one poll per `step` seconds; replicas follow the backlog."""
    records = []
    current = 0
    for i in range(polls):
        backlog = max(0.0, 20.0 - abs(i - polls / 2) * 1.5) if polls / 4 < i < 3 * polls / 4 else 0.0
        desired = min(4, int(-(-backlog // 5)))
        records.append(
            poll(
                ref,
                start + i * step,
                (trigger(0, backlog, active=backlog > 0), trigger(1, backlog / 2, active=False, name="half")),
                current=current,
                desired=desired,
            )
        )
        current = desired
    return records
