"""The scaler catalog. A trigger type `foo-bar` lives in module `ebb.scalers.foo_bar`.

Modules are imported on first use, so a client library is loaded only when a manifest uses its trigger,
and adding a trigger type is adding one file. Modules whose name starts with `_` are shared helpers.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import replace

from ebb.errors import SpecError
from ebb.scalers.base import (
    MetricSpec,
    MetricType,
    Scaler,
    ScalerReading,
    TriggerContext,
)

__all__ = [
    "MetricSpec",
    "Scaler",
    "ScalerReading",
    "TriggerContext",
    "available_types",
    "build_scaler",
    "scaler_class",
]


def _module_name(trigger_type: str) -> str:
    return trigger_type.replace("-", "_")


@functools.cache
def _known_types() -> frozenset[str]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "base"]
    return frozenset(n.replace("_", "-") for n in names)


def available_types() -> list[str]:
    """Every trigger type this installation knows, by the name users write."""
    return sorted(_known_types())


def scaler_class(trigger_type: str) -> type[Scaler]:
    """The class for `trigger_type`; KeyError if there is none."""
    if trigger_type not in _known_types():
        raise KeyError(trigger_type)
    module = importlib.import_module(f"{__name__}.{_module_name(trigger_type)}")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Scaler) and getattr(value, "type_name", None) == trigger_type:
            return value
    raise KeyError(trigger_type)


def build_scaler(
    trigger_type: str,
    metadata: Mapping[str, str],
    *,
    ctx: TriggerContext | None = None,
    auth_params: Mapping[str, str] | None = None,
    resolved_env: Mapping[str, str] | None = None,
    metric_type: MetricType | None = None,
) -> Scaler:
    """Parse `metadata` for `trigger_type` and return a ready (not yet connected) scaler.

    Raises SpecError naming the object, trigger and parameter when the metadata is wrong.
    """
    ctx = ctx or TriggerContext(trigger_type=trigger_type)
    if ctx.trigger_type != trigger_type or (metric_type and ctx.metric_type != metric_type):
        ctx = replace(ctx, trigger_type=trigger_type, metric_type=metric_type or ctx.metric_type)
    try:
        cls = scaler_class(trigger_type)
    except KeyError:
        raise SpecError(
            ctx.object_ref,
            f"spec.triggers[{ctx.trigger_index}].type",
            f"unknown trigger type {trigger_type!r}; known types: {', '.join(available_types())}",
        ) from None
    if ctx.metric_type == "Utilization" and not cls.supports_utilization:
        raise SpecError(
            ctx.object_ref,
            f"spec.triggers[{ctx.trigger_index}].metricType",
            f"{trigger_type} triggers take metricType AverageValue or Value; Utilization is only for cpu and memory",
        )
    return cls.from_trigger(ctx, metadata, auth_params, resolved_env)
