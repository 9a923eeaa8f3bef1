"""The scaler catalog. A trigger type `foo-bar` lives in module `ebb.scalers.foo_bar`.

Modules are imported on first use, so a client library is loaded only when a manifest uses its trigger,
and adding a trigger type is adding one file. Modules whose name starts with `_` are shared helpers.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ebb.errors import SpecError
from ebb.scalers.base import (
    MetricSpec,
    MetricType,
    Scaler,
    ScalerReading,
    TriggerContext,
    auth_only_parameters,
)

__all__ = [
    "KEDA_TRIGGER_TYPES",
    "MetricSpec",
    "Scaler",
    "ScalerReading",
    "TriggerContext",
    "available_types",
    "build_scaler",
    "closest",
    "scaler_class",
    "unknown_parameters",
    "unknown_type_message",
]

#: Every trigger type KEDA builds (the switch in keda:pkg/scaling/scalers_builder.go, main @ 8b4f083, less its
#: test-only `external-mock`). A type here that ebb lacks is KEDA's, not a typo.
KEDA_TRIGGER_TYPES = frozenset(
    [
        "activemq",
        "apache-kafka",
        "arangodb",
        "artemis-queue",
        "aws-cloudwatch",
        "aws-dynamodb",
        "aws-dynamodb-streams",
        "aws-kinesis-stream",
        "aws-sqs-queue",
        "azure-app-insights",
        "azure-blob",
        "azure-data-explorer",
        "azure-eventhub",
        "azure-log-analytics",
        "azure-monitor",
        "azure-pipelines",
        "azure-queue",
        "azure-servicebus",
        "beanstalkd",
        "cassandra",
        "clickhouse",
        "couchdb",
        "cpu",
        "cron",
        "datadog",
        "dynatrace",
        "elastic-forecast",
        "elasticsearch",
        "etcd",
        "external",
        "external-push",
        "forgejo-runner",
        "gcp-cloudtasks",
        "gcp-pubsub",
        "gcp-spanner",
        "gcp-stackdriver",
        "gcp-storage",
        "github-runner",
        "graphite",
        "huawei-cloudeye",
        "ibmmq",
        "influxdb",
        "kafka",
        "kubernetes-resource",
        "kubernetes-workload",
        "liiklus",
        "loki",
        "memory",
        "metrics-api",
        "mongodb",
        "mssql",
        "mysql",
        "nats-jetstream",
        "new-relic",
        "nsq",
        "opensearch",
        "openstack-metric",
        "openstack-swift",
        "postgresql",
        "predictkube",
        "prometheus",
        "pulsar",
        "rabbitmq",
        "redis",
        "redis-cluster",
        "redis-cluster-streams",
        "redis-sentinel",
        "redis-sentinel-streams",
        "redis-streams",
        "selenium-grid",
        "solace-direct-messaging",
        "solace-event-queue",
        "solarwinds",
        "solr",
        "splunk",
        "splunk-observability",
        "sumologic",
        "temporal",
    ]
)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` was most likely meant to be (a typo's correction), or None."""
    pool = list(candidates)
    found = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not found:
        lowered = {c.lower(): c for c in pool}
        found = [lowered[word.lower()]] if word.lower() in lowered else []
    return found[0] if found else None


def unknown_type_message(trigger_type: str) -> str | None:
    """Why `trigger_type` can't be a trigger type at all (in neither ebb's catalog nor KEDA's), else None."""
    if trigger_type in _known_types() or trigger_type in KEDA_TRIGGER_TYPES:
        return None
    guess = closest(trigger_type, _known_types() | KEDA_TRIGGER_TYPES)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"unknown trigger type {trigger_type!r}{hint}: it is neither one of ebb's nor one of KEDA's"


def unknown_parameters(trigger_type: str, metadata: Mapping[str, str]) -> list[tuple[str, str | None, bool]]:
    """Metadata keys the trigger type does not read: (key, the closest key it does read or None, whether the
    key is a parameter read only from a TriggerAuthentication).

    Empty for types ebb lacks and for types that forward all their metadata (external, external-push).
    """
    try:
        cls = scaler_class(trigger_type)
    except KeyError:
        return []
    known = cls.parameter_names()
    if known is None:
        return []
    auth_only = auth_only_parameters(cls.Metadata)
    return [(key, closest(key, known), key in auth_only) for key in metadata if key not in known]


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
        message = unknown_type_message(trigger_type) or (
            f"{trigger_type!r} is a KEDA trigger type that ebb does not implement yet; "
            f"ebb's are: {', '.join(available_types())}"
        )
        raise SpecError(ctx.object_ref, f"spec.triggers[{ctx.trigger_index}].type", message) from None
    if ctx.metric_type == "Utilization" and not cls.supports_utilization:
        raise SpecError(
            ctx.object_ref,
            f"spec.triggers[{ctx.trigger_index}].metricType",
            f"{trigger_type} triggers take metricType AverageValue or Value; Utilization is only for cpu and memory",
        )
    return cls.from_trigger(ctx, metadata, auth_params, resolved_env)
