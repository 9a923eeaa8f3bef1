"""What observers need to know about an object that polls do not carry: its target, bounds and trigger types."""

from __future__ import annotations

from dataclasses import dataclass

from ebb.observe.cost import annotated_price
from ebb.observe.metrics import TriggerInfo
from ebb.runtime.build import object_ref
from ebb.runtime.observer import ObjectRef
from ebb.spec.models import ScaledJob, ScaledObject


@dataclass(frozen=True)
class ObjectInfo:
    ref: ObjectRef
    target: str
    min_replicas: int
    max_replicas: int
    triggers: tuple[TriggerInfo, ...]
    #: The object's `ebb.dev/cost-per-replica-hour` annotation, if it has a valid one.
    cost_per_replica_hour: float | None = None


def object_info(obj: ScaledObject | ScaledJob) -> ObjectInfo:
    triggers = tuple(TriggerInfo(i, t.type, t.name) for i, t in enumerate(obj.spec.triggers))
    price = annotated_price(obj.metadata.annotations)
    if isinstance(obj, ScaledObject):
        ref = obj.spec.scale_target_ref
        target = f"{ref.kind}/{ref.name}"
    else:
        command = obj.spec.job_container.command or []
        target = "Job/" + (" ".join(command) if command else obj.spec.job_container.image or "?")
    return ObjectInfo(object_ref(obj), target, obj.spec.min_replica_count, obj.spec.max_replica_count, triggers, price)
