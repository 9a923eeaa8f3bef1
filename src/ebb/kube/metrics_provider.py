"""The seam between the operator's scaling loops and the external-metrics API server.

ebb serves `external.metrics.k8s.io` from the operator process itself, so the server reads values straight
from the loops (KEDA needs a gRPC hop between two deployments for this).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class MetricNotFound(LookupError):
    """No ScaledObject in that namespace matching the selector serves a metric of that name."""


@dataclass(frozen=True)
class ExternalMetricValue:
    metric_name: str
    value: float
    #: Unix time the value was read from its source.
    timestamp: float
    metric_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricDescriptor:
    """One metric the API lists in discovery: (namespace, name) as the HPA will ask for it."""

    namespace: str
    metric_name: str
    scaled_object: str


class MetricsProvider(Protocol):
    def list_metrics(self) -> list[MetricDescriptor]:
        """Every external metric currently served (for the API's resource list)."""
        ...

    async def get_metric(
        self, namespace: str, metric_name: str, selector: Mapping[str, str]
    ) -> list[ExternalMetricValue]:
        """Values for `metric_name` of the ScaledObject the label `selector` names
        (`scaledobject.keda.sh/name`). Cached values, or a fresh read when the trigger has
        useCachedMetrics false. Raises MetricNotFound, or ScalerError when the source fails and no
        fallback applies (the HPA then reports FailedGetExternalMetric)."""
        ...
