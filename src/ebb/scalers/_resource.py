"""What the `cpu` and `memory` triggers share (KEDA's pkg/scalers/cpu_memory_scaler.go).

In Kubernetes both become HPA Resource metrics (ContainerResource when `containerName` is set), which
metrics-server serves: KEDA reads nothing and reports them always active. Under `ebb run` there is no
metrics-server, so ebb measures the ProcessGroup's running workers, each with its child processes, itself.
The value is a per-worker average, as the HPA's is a per-pod average.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import psutil

from ebb.errors import SpecError
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    metric_name,
    param,
)
from ebb.units import parse_quantity

ResourceName = Literal["cpu", "memory"]

_INT = re.compile(r"[+-]?[0-9]+")
_EXAMPLES: dict[str, tuple[str, str]] = {"cpu": ("500m", "cores"), "memory": ("256Mi", "bytes")}


class ResourceMetadata(ScalerMetadata):
    value: str = param(
        name="value",
        min_length=1,
        description=(
            'Utilization: a whole percent of the request, > 0 (`"60"`). AverageValue: a quantity per '
            'worker: cores for cpu (`"500m"` = 0.5, `"2"`), bytes for memory (`"256Mi"`, `"1G"`)'
        ),
    )
    container_name: str | None = param(None, name="containerName", description="Kubernetes only")


def process_tree(pid: int) -> list[psutil.Process] | None:
    """A worker and all its descendants; None when the worker itself is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return None


class ResourceScaler(Scaler):
    """Base of `cpu` and `memory`: parses the target, checks the request, turns usage into the metric."""

    resource: ClassVar[ResourceName]
    Metadata = ResourceMetadata
    #: The old `metadata.type`: refused by the spec layer (as KEDA does), so never reported as unknown too.
    extra_parameters: ClassVar[frozenset[str]] = frozenset({"type"})
    supports_utilization = True

    def __init__(self, ctx: TriggerContext, meta: Any) -> None:
        super().__init__(ctx, meta)
        self.meta: ResourceMetadata = meta
        self.target = self._parse_target()
        self.request = self._request()

    def _where(self, key: str) -> str:
        return f"spec.triggers[{self.ctx.trigger_index}].{key}"

    def _parse_target(self) -> float:
        text = self.meta.value
        example, unit = _EXAMPLES[self.resource]
        if self.ctx.metric_type == "Utilization":
            # KEDA: strconv.ParseInt(value, 10, 32); the HPA then refuses a utilization that is not > 0.
            if _INT.fullmatch(text) is None or not 0 < int(text) < 2**31:
                raise SpecError(
                    self.ctx.object_ref,
                    self._where("metadata.value"),
                    f"with metricType Utilization, value is a whole percent of the request greater than 0, "
                    f"such as 50 (got {text!r})",
                )
            return float(int(text))
        if self.ctx.metric_type == "AverageValue":
            try:
                value = parse_quantity(text)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise SpecError(
                    self.ctx.object_ref,
                    self._where("metadata.value"),
                    f"with metricType AverageValue, value is a positive quantity in {unit} per worker, "
                    f"such as {example!r} (got {text!r})",
                )
            return value
        raise SpecError(
            self.ctx.object_ref,
            self._where("metricType"),
            f"{self.resource} triggers take metricType Utilization or AverageValue, not {self.ctx.metric_type}",
        )

    def _request(self) -> float | None:
        """The ProcessGroup's request that Utilization is relative to; checked when the trigger is built."""
        requests = self.ctx.target_requests
        if self.ctx.metric_type != "Utilization" or requests is None:
            return None
        request = requests.get(self.resource)
        if request is None or not request > 0:
            example, _ = _EXAMPLES[self.resource]
            raise SpecError(
                self.ctx.object_ref,
                self._where("metricType"),
                f"Utilization is a percent of the scale target's request, and the ProcessGroup sets no "
                f"spec.resources.requests.{self.resource}: set one (such as {example!r}) or use metricType "
                "AverageValue",
            )
        return request

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, self.resource),
            target=self.target,
            metric_type=self.ctx.metric_type,
            source="Resource",
            resource_name=self.resource,
            container_name=self.meta.container_name,
        )

    @abstractmethod
    async def average_usage(self, pids: Sequence[int]) -> float:
        """The average use per running worker (cpu in cores, memory in bytes); 0 without any worker."""

    async def read(self) -> ScalerReading:
        if self.ctx.target_pids is None:
            # Not a local ProcessGroup: in Kubernetes metrics-server measures these for the HPA, and for
            # activation KEDA's cpu/memory scalers report 0 and always active. Nothing to read here.
            return ScalerReading(value=0.0, active=True)
        usage = await self.average_usage(list(self.ctx.target_pids()))
        if self.ctx.metric_type == "Utilization":
            if self.request is None:
                raise self.error(f"Utilization needs the ProcessGroup's spec.resources.requests.{self.resource}")
            usage = usage / self.request * 100.0
        # KEDA: cpu and memory triggers are always active; alone they never scale a target to zero.
        return ScalerReading(value=usage, active=True)
