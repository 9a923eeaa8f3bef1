"""cpu and memory triggers in the operator: HPA Resource metrics that metrics-server serves, not ebb.

They have no scaler in the catalog (nothing to read locally); here they only shape the HPA and count as
always active, as KEDA's cpu/memory scalers do.
"""

from __future__ import annotations

from collections.abc import Mapping

from ebb.errors import SpecError
from ebb.scalers.base import MetricSpec, Scaler, ScalerMetadata, ScalerReading, TriggerContext


class _ResourceMetadata(ScalerMetadata):
    value: float
    container_name: str | None = None


class ResourceTrigger(Scaler):
    type_name = "cpu"
    Metadata = _ResourceMetadata
    supports_utilization = True

    @classmethod
    def from_trigger(
        cls,
        ctx: TriggerContext,
        metadata: Mapping[str, str],
        auth_params: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
    ) -> ResourceTrigger:
        where = f"spec.triggers[{ctx.trigger_index}].metadata.value"
        raw = metadata.get("value", "")
        try:
            value = float(raw)
        except ValueError:
            raise SpecError(ctx.object_ref, where, f"expected a number, got {raw!r}") from None
        return cls(ctx, _ResourceMetadata(value=value, container_name=metadata.get("containerName") or None))

    def metric_spec(self) -> MetricSpec:
        assert isinstance(self.meta, _ResourceMetadata)
        return MetricSpec(
            name=self.ctx.trigger_type,
            target=self.meta.value,
            metric_type=self.ctx.metric_type,
            source="Resource",
            resource_name=self.ctx.trigger_type,
            container_name=self.meta.container_name,
        )

    async def read(self) -> ScalerReading:
        # The HPA reads the value from metrics-server; for activation a cpu/memory trigger is always active.
        return ScalerReading(0.0, True)
