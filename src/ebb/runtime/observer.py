"""What the scaling loops report, and to whom. Observers record; they never feed back into decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ebb.scaling.forecast import Prediction
from ebb.scaling.types import Decision, ScalingEvent, TriggerResult


@dataclass(frozen=True, order=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


#: What events about ebb itself (its state files, leftovers of a killed run) are recorded under.
RUNTIME_REF = ObjectRef("Runtime", "", "ebb")


@dataclass(frozen=True)
class PollRecord:
    """One poll of one object: what the triggers said, what the core decided, what the target now runs."""

    ref: ObjectRef
    time: float
    triggers: tuple[TriggerResult, ...]
    decision: Decision | None
    current_replicas: int
    desired_replicas: int
    ready_replicas: int
    #: How late this poll started against its schedule, in seconds.
    lateness: float = 0.0
    #: Seconds spent reading all triggers.
    read_seconds: float = 0.0
    #: Why fewer replicas run than desired (a crash loop, a failed start...); None when all run.
    reason: str | None = None
    #: What forecasting triggers (predictkube, ebb.dev/predictive) said at this poll, acting or observing.
    predictions: tuple[Prediction, ...] = ()


class Observer:
    """Base observer: override what you need. Methods must be quick and must not raise."""

    def poll(self, record: PollRecord) -> None:
        """After every poll of every object."""

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        """When something changed: activation, scaling, fallback, pause, a failing trigger."""

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        """When an object cannot be scaled at all (bad spec, missing credentials, unknown target)."""

    def hint(self, ref: ObjectRef, key: str, message: str, now: float) -> None:
        """Advice that is not a failure (push unavailable, polling carries on); `key` names what it is about,
        so a hint about one server reported by many objects can be said once."""

    def removed(self, ref: ObjectRef) -> None:
        """When an object stops being scaled."""


class Observers(Observer):
    """Fans out to several observers; one that raises is silenced for that call, never the loop."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = list(observers)

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def poll(self, record: PollRecord) -> None:
        for o in self.observers:
            try:
                o.poll(record)
            except Exception:  # an observer's bug must not stop scaling
                continue

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        for o in self.observers:
            try:
                o.event(ref, event, now)
            except Exception:
                continue

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        for o in self.observers:
            try:
                o.problem(ref, message, now)
            except Exception:
                continue

    def hint(self, ref: ObjectRef, key: str, message: str, now: float) -> None:
        for o in self.observers:
            try:
                o.hint(ref, key, message, now)
            except Exception:
                continue

    def removed(self, ref: ObjectRef) -> None:
        for o in self.observers:
            try:
                o.removed(ref)
            except Exception:
                continue
