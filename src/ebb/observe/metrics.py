"""Prometheus metrics for ebb: KEDA's names and labels where KEDA has one, `ebb_*` for the rest.

Every runtime gets its own CollectorRegistry (never the global one), so two runtimes or two tests never share
series. Labels carry object, trigger and metric names only: never a trigger's metadata, so never a secret.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

import ebb
from ebb.observe.keda_names import RESOURCE_TRIGGER_TYPES, RESOURCE_TYPES, keda_scaler_name
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent, TriggerResult

#: KEDA's per-trigger label set (`keda:pkg/metricscollector/prommetrics.go`).
SCALER_LABELS = ("namespace", "metric", "scaledObject", "scaler", "triggerIndex", "type")
#: Decision latency buckets (seconds): most activations are decided in the poll that sees the work.
ACTIVATION_BUCKETS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_INDEX = re.compile(r"^s(\d+)-")


def _resource_type(kind: str) -> str:
    """The `type` label of the per-trigger and scale-loop series (KEDA's getResourceType)."""
    return "scaledjob" if kind == "ScaledJob" else "scaledobject"


#: What docs/observability.md's metrics table says of each series (scripts/gen_metrics_docs.py writes the table:
#: name, type and labels from the families themselves). A series without an entry is described by its HELP text.
_HPA_MEANING = (
    "`ebb run` only: kube-state-metrics' series for the HPA KEDA would create (`keda-hpa-<name>`), which KEDA's "
    "Grafana dashboard reads; local targets have no HPA. On Kubernetes, kube-state-metrics exports them"
)
DOC_MEANINGS: dict[str, str] = {
    "keda_build_info": "ebb's version and commit; `goversion` holds the Python version",
    "keda_scaler_metrics_value": "the trigger's last value",
    "keda_scaler_metrics_latency_seconds": "how long the trigger took to answer at the last poll",
    "keda_scaler_active": "1 if the trigger is active (0 while it fails; always 1 for cpu/memory)",
    "keda_scaler_detail_errors_total": "failed reads of this trigger",
    "keda_scaled_object_errors_total": "polls with a failing trigger, plus problems (object cannot be scaled)",
    "keda_scaled_job_errors_total": "the same for ScaledJobs",
    "keda_scaled_object_paused": "1 while paused by annotation",
    "keda_resource_registered_total": (
        "ScaledObjects, ScaledJobs, TriggerAuthentications registered (goes down when one is removed, as in KEDA)"
    ),
    "keda_trigger_registered_total": "triggers being polled, by trigger type",
    "keda_internal_scale_loop_latency_seconds": "how late the last poll started against its schedule",
    "keda_cloudeventsource_events_emitted_total": (
        "CloudEvents sent (`state` = `emitted` or `failed`; `cloudeventsource` is the source's name, `eventsink` "
        "`http`)"
    ),
    "keda_cloudeventsource_events_queued": "CloudEvents waiting to be sent",
    "kube_horizontalpodautoscaler_status_current_replicas": _HPA_MEANING,
    "kube_horizontalpodautoscaler_status_desired_replicas": _HPA_MEANING,
    "kube_horizontalpodautoscaler_spec_max_replicas": _HPA_MEANING,
    "ebb_desired_replicas": "replicas decided at the last poll",
    "ebb_current_replicas": "replicas the target was set to before the last poll's decision",
    "ebb_ready_replicas": "replicas actually running",
    "ebb_activation_latency_seconds": (
        "decision latency of a scale from zero: from the first poll that saw activity while the target ran 0 replicas"
        " to the poll that scaled it up (0 when the same poll decides). End-to-end latency (work arriving → worker "
        "running) is measured by the benchmarks"
    ),
    "ebb_predictive_guard_active": (
        "forecasting triggers (`predictkube`, `ebb.dev/predictive`): 1 while the guard has prediction off because the"
        " recent forecast error is above `maxError` (the switch is also an Event, `PredictionDisabled` / "
        "`PredictionResumed`)"
    ),
    "ebb_predictive_forecast_error": "the recent relative forecast error the guard compares with `maxError`",
    "ebb_predictive_forecast_value": (
        "the latest forecast of the trigger's metric for the next step (`band` = `mean`, `lower`, `upper`)"
    ),
    "ebb_predictive_would_be_value": (
        'the metric prediction serves (`mode="on"`) or, in observe mode, would serve (`mode="observe"`): max(reading,'
        " forecast peak over the horizon)"
    ),
    "ebb_predictive_would_be_replicas": (
        "the replicas that value asks for (AverageValue metrics): in observe mode, what prediction would have done "
        "without acting"
    ),
    "ebb_scaling_events_total": (
        "scaling events by reason (`KEDAScaleTargetActivated`, `SuccessfulRescale`, `KEDAScalerFailed`, ...)"
    ),
    "ebb_observer_dropped_total": "records dropped because the history or CloudEvents queue was full",
}


@functools.cache
def git_commit() -> str:
    """The commit ebb was built from: $EBB_GIT_COMMIT (the image's build argument), else the git work tree the
    package runs from (a source checkout or an editable install), else "unknown"."""
    env = os.environ.get("EBB_GIT_COMMIT", "").strip()
    if env:
        return env
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    # Only a checkout that holds this very file: a site-packages inside some other repository is not ebb's.
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit or not (Path(top) / "src" / "ebb" / "observe" / "metrics.py").exists():
        return "unknown"
    return commit


@dataclass(frozen=True)
class TriggerInfo:
    """What the manifest says about one trigger, for the `scaler` label (KEDA: trigger name, else the type)."""

    index: int
    type: str
    name: str | None = None


@dataclass
class _ObjectMemory:
    triggers: dict[int, TriggerInfo] = field(default_factory=dict)
    #: Label tuples this object has published, so `removed` can delete exactly them.
    series: set[tuple[str, ...]] = field(default_factory=set)
    #: Label tuples of the prediction series (with their extra label), for `removed`.
    predicted: set[tuple[Gauge, tuple[str, ...]]] = field(default_factory=set)
    #: When a poll first saw activity while the target ran zero replicas (for ebb_activation_latency_seconds).
    active_since: float | None = None
    registered: bool = False
    max_replicas: int | None = None


class EbbMetrics:
    """The metric families, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Gauge(
            "keda_build_info",
            "A metric with a constant '1' value labeled by version, git_commit and goversion from which ebb was built.",
            ["version", "git_commit", "goversion", "goos", "goarch"],
            registry=r,
        )
        python = f"python{platform.python_version()}"
        system = platform.system().lower()
        self.build_info.labels(ebb.__version__, git_commit(), python, system, platform.machine()).set(1)
        self.scaler_metrics_value = Gauge(
            "keda_scaler_metrics_value",
            "The current value for each scaler's metric that would be used by the HPA in computing the target.",
            SCALER_LABELS,
            registry=r,
        )
        self.scaler_metrics_latency = Gauge(
            "keda_scaler_metrics_latency_seconds",
            "The latency of retrieving current metric from each scaler.",
            SCALER_LABELS,
            registry=r,
        )
        self.scaler_active = Gauge(
            "keda_scaler_active",
            "Indicates whether a scaler is active (1), or not (0).",
            SCALER_LABELS,
            registry=r,
        )
        self.scaler_detail_errors = Counter(
            "keda_scaler_detail_errors",
            "The number of errors encountered for each scaler.",
            SCALER_LABELS,
            registry=r,
        )
        self.scaled_object_errors = Counter(
            "keda_scaled_object_errors",
            "The number of errors that have occurred for each ScaledObject.",
            ["namespace", "scaledObject"],
            registry=r,
        )
        self.scaled_job_errors = Counter(
            "keda_scaled_job_errors",
            "Number of scaled job errors.",
            ["namespace", "scaledJob"],
            registry=r,
        )
        self.scaled_object_paused = Gauge(
            "keda_scaled_object_paused",
            "Indicates whether a ScaledObject is paused (1), or not (0).",
            ["namespace", "scaledObject"],
            registry=r,
        )
        # KEDA declares these two as gauges with a `_total` name (they go down when an object goes away).
        self.resource_registered = Gauge(
            "keda_resource_registered_total",
            "Total number of KEDA custom resources per namespace for each custom resource type (CRD) registered.",
            ["type", "namespace"],
            registry=r,
        )
        self.trigger_registered = Gauge(
            "keda_trigger_registered_total",
            "Total number of triggers per trigger type registered.",
            ["type"],
            registry=r,
        )
        self.scale_loop_latency = Gauge(
            "keda_internal_scale_loop_latency_seconds",
            "Total deviation (in seconds) between the expected execution time and the actual execution time "
            "for the scaling loop.",
            ["namespace", "type", "resource"],
            registry=r,
        )
        object_labels = ["namespace", "type", "name"]
        self.desired_replicas = Gauge(
            "ebb_desired_replicas", "Replicas ebb decided on at the last poll.", object_labels, registry=r
        )
        self.current_replicas = Gauge(
            "ebb_current_replicas", "Replicas the target was set to at the last poll.", object_labels, registry=r
        )
        self.ready_replicas = Gauge(
            "ebb_ready_replicas", "Replicas actually running (ready) at the last poll.", object_labels, registry=r
        )
        self.activation_latency = Histogram(
            "ebb_activation_latency_seconds",
            "Decision latency of a scale from zero: from the first poll that saw activity on an object at zero "
            "replicas to the poll that scaled it up.",
            ["namespace", "type", "name"],
            buckets=ACTIVATION_BUCKETS,
            registry=r,
        )
        self.scaling_events = Counter(
            "ebb_scaling_events", "Scaling events emitted, by reason.", ["reason"], registry=r
        )
        self.cloudevents_emitted = Counter(
            "keda_cloudeventsource_events_emitted",
            "Measured the total number of emitted cloudevents.",
            ["namespace", "cloudeventsource", "eventsink", "state"],
            registry=r,
        )
        self.cloudevents_queued = Gauge(
            "keda_cloudeventsource_events_queued",
            "Indicates how many events are still queued.",
            ["namespace"],
            registry=r,
        )
        # kube-state-metrics' names for the HPA KEDA would create (keda-hpa-<name>), which KEDA's Grafana dashboard
        # reads. Only where no HPA exists (`ebb run`'s local targets); on Kubernetes kube-state-metrics has them.
        hpa_labels = ["namespace", "horizontalpodautoscaler"]
        self.hpa_current_replicas = Gauge(
            "kube_horizontalpodautoscaler_status_current_replicas",
            "Current number of replicas of pods managed by this autoscaler (ebb run: the local target's).",
            hpa_labels,
            registry=r,
        )
        self.hpa_desired_replicas = Gauge(
            "kube_horizontalpodautoscaler_status_desired_replicas",
            "Desired number of replicas of pods managed by this autoscaler (ebb run: ebb's decision).",
            hpa_labels,
            registry=r,
        )
        self.hpa_max_replicas = Gauge(
            "kube_horizontalpodautoscaler_spec_max_replicas",
            "Upper limit for the number of pods that can be set by the autoscaler (maxReplicaCount).",
            hpa_labels,
            registry=r,
        )
        # Prediction (predictkube, ebb.dev/predictive), per trigger with KEDA's trigger labels.
        self.predictive_guard_active = Gauge(
            "ebb_predictive_guard_active",
            "1 while the guard has prediction off for this trigger (recent forecast error above maxError), else 0.",
            SCALER_LABELS,
            registry=r,
        )
        self.predictive_forecast_error = Gauge(
            "ebb_predictive_forecast_error",
            "Recent relative forecast error of this trigger's metric (sum |forecast - actual| / (sum actual + "
            "steps)), which the guard compares with maxError.",
            SCALER_LABELS,
            registry=r,
        )
        self.predictive_forecast = Gauge(
            "ebb_predictive_forecast_value",
            "The latest forecast of this trigger's metric for the next step: point, lower and upper band.",
            [*SCALER_LABELS, "band"],
            registry=r,
        )
        self.predictive_would_be_value = Gauge(
            "ebb_predictive_would_be_value",
            "The metric prediction serves (mode on) or would serve (mode observe): max(reading, forecast peak).",
            [*SCALER_LABELS, "mode"],
            registry=r,
        )
        self.predictive_would_be_replicas = Gauge(
            "ebb_predictive_would_be_replicas",
            "Replicas that metric asks for (AverageValue metrics), acting (mode on) or only recorded (observe).",
            [*SCALER_LABELS, "mode"],
            registry=r,
        )
        self.observer_dropped = Counter(
            "ebb_observer_dropped",
            "Records an observer dropped because its queue was full (scaling never waits for observers).",
            ["observer"],
            registry=r,
        )


class MetricsObserver(Observer):
    """Keeps the Prometheus series of every scaled object up to date from polls, events and problems."""

    def __init__(self, metrics: EbbMetrics | None = None, *, hpa_series: bool = False) -> None:
        self.metrics = metrics or EbbMetrics()
        #: Export kube_horizontalpodautoscaler_* for ScaledObjects (ebb run: there is no HPA, nor kube-state-metrics).
        self.hpa_series = hpa_series
        self._objects: dict[ObjectRef, _ObjectMemory] = {}

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def _memory(self, ref: ObjectRef) -> _ObjectMemory:
        memory = self._objects.get(ref)
        if memory is None:
            memory = self._objects[ref] = _ObjectMemory()
        return memory

    def register(self, ref: ObjectRef, triggers: Iterable[TriggerInfo], max_replicas: int | None = None) -> None:
        """An object starts being scaled: count it and its triggers (keda_*_registered_total)."""
        memory = self._memory(ref)
        if memory.registered:
            return
        memory.registered = True
        memory.triggers = {t.index: t for t in triggers}
        memory.max_replicas = max_replicas
        self.resource_added(ref.kind, ref.namespace)
        for t in memory.triggers.values():
            self.metrics.trigger_registered.labels(t.type).inc()
        self._object_errors(ref)  # KEDA creates the object's error counter at 0, so dashboards draw a 0 line

    def resource_added(self, kind: str, namespace: str) -> None:
        """One more custom resource of `kind` (ScaledObject, TriggerAuthentication, ...) in `namespace`."""
        rtype = RESOURCE_TYPES.get(kind)
        if rtype is not None:
            self.metrics.resource_registered.labels(rtype, namespace or "default").inc()

    def resource_removed(self, kind: str, namespace: str) -> None:
        rtype = RESOURCE_TYPES.get(kind)
        if rtype is not None:
            self.metrics.resource_registered.labels(rtype, namespace or "default").dec()

    def _object_errors(self, ref: ObjectRef) -> Counter:
        if ref.kind == "ScaledJob":
            return self.metrics.scaled_job_errors.labels(ref.namespace, ref.name)
        return self.metrics.scaled_object_errors.labels(ref.namespace, ref.name)

    def _scaler_labels(self, ref: ObjectRef, memory: _ObjectMemory, position: int, r: TriggerResult) -> tuple[str, ...]:
        """KEDA's labels: `scaler` is the trigger's name, else KEDA's scaler type name (`redisScaler`); the
        `metric` of a cpu/memory trigger is the resource's name."""
        match = _INDEX.match(r.metric_name)
        index = int(match.group(1)) if match else position
        info = memory.triggers.get(index)
        trigger_type = info.type if info is not None else None
        metric = r.metric_name
        if r.resource:
            resource = trigger_type if trigger_type in RESOURCE_TRIGGER_TYPES else _INDEX.sub("", r.metric_name)
            trigger_type = trigger_type or resource
            metric = resource
        if r.trigger_name:
            scaler = r.trigger_name
        elif info is not None and info.name:
            scaler = info.name
        elif trigger_type is not None:
            scaler = keda_scaler_name(trigger_type)
        else:
            scaler = r.metric_name
        return (ref.namespace, metric, ref.name, scaler, str(index), _resource_type(ref.kind))

    def poll(self, record: PollRecord) -> None:
        m = self.metrics
        ref = record.ref
        memory = self._memory(ref)
        rtype = _resource_type(ref.kind)
        any_error = False
        any_active = False
        for position, r in enumerate(record.triggers):
            labels = self._scaler_labels(ref, memory, position, r)
            memory.series.add(labels)
            if r.resource:
                # KEDA exports only keda_scaler_active for cpu/memory (always 1: they are HPA resource metrics).
                if r.error is None:
                    m.scaler_active.labels(*labels).set(1)
                continue
            # The trigger's own read time (KEDA's per-scaler latency); the poll's when the scaler was not timed.
            latency = r.read_seconds if r.read_seconds is not None else record.read_seconds
            m.scaler_metrics_latency.labels(*labels).set(latency)
            if r.error is not None:
                any_error = True
                m.scaler_detail_errors.labels(*labels).inc()
                m.scaler_active.labels(*labels).set(0)
                continue
            m.scaler_detail_errors.labels(*labels)  # a healthy trigger's error counter exists, at 0 (as KEDA)
            m.scaler_metrics_value.labels(*labels).set(r.value if r.value is not None else 0.0)
            m.scaler_active.labels(*labels).set(1 if r.active else 0)
            any_active = any_active or r.active
        if record.predictions:
            self._predictions(ref, memory, record)
        object_errors = self._object_errors(ref)
        if any_error:
            object_errors.inc()
        m.scale_loop_latency.labels(ref.namespace, rtype, ref.name).set(record.lateness)
        obj = (ref.namespace, rtype, ref.name)
        m.desired_replicas.labels(*obj).set(record.desired_replicas)
        m.current_replicas.labels(*obj).set(record.current_replicas)
        m.ready_replicas.labels(*obj).set(record.ready_replicas)
        if self.hpa_series and ref.kind == "ScaledObject":
            hpa = (ref.namespace, f"keda-hpa-{ref.name}")
            m.hpa_current_replicas.labels(*hpa).set(record.current_replicas)
            m.hpa_desired_replicas.labels(*hpa).set(record.desired_replicas)
            if memory.max_replicas is not None:
                m.hpa_max_replicas.labels(*hpa).set(memory.max_replicas)
        if record.decision is not None:
            paused = record.decision.conditions.get("Paused")
            m.scaled_object_paused.labels(ref.namespace, ref.name).set(
                1 if paused is not None and paused.status == "True" else 0
            )
            any_active = record.decision.active
        self._activation(memory, record, any_active)

    def _predictions(self, ref: ObjectRef, memory: _ObjectMemory, record: PollRecord) -> None:
        m = self.metrics
        positions = {r.metric_name: (i, r) for i, r in enumerate(record.triggers)}
        for p in record.predictions:
            found = positions.get(p.metric_name)
            if found is None:
                continue
            labels = self._scaler_labels(ref, memory, *found)
            fc = p.forecast
            series: list[tuple[Gauge, tuple[str, ...], float]] = [
                (m.predictive_guard_active, labels, 0 if p.enabled else 1),
                (m.predictive_forecast_error, labels, p.error),
                (m.predictive_would_be_value, (*labels, p.mode), p.value),
            ]
            for band, values in (("mean", fc.mean), ("lower", fc.lower), ("upper", fc.upper)):
                if values:
                    series.append((m.predictive_forecast, (*labels, band), values[0]))
            if p.replicas is not None:
                series.append((m.predictive_would_be_replicas, (*labels, p.mode), float(p.replicas)))
            for family, key, value in series:
                family.labels(*key).set(value)
                memory.predicted.add((family, key))

    def _activation(self, memory: _ObjectMemory, record: PollRecord, active: bool) -> None:
        if record.current_replicas > 0:
            memory.active_since = None
            return
        if not active:
            memory.active_since = None
            return
        if memory.active_since is None:
            memory.active_since = record.time
        if record.desired_replicas > 0:
            ref = record.ref
            self.metrics.activation_latency.labels(ref.namespace, _resource_type(ref.kind), ref.name).observe(
                max(0.0, record.time - memory.active_since)
            )
            memory.active_since = None

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self.metrics.scaling_events.labels(event.reason).inc()

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if ref.kind in ("ScaledJob", "ScaledObject"):
            self._object_errors(ref).inc()

    def removed(self, ref: ObjectRef) -> None:
        memory = self._objects.pop(ref, None)
        if memory is None:
            return
        m = self.metrics
        for labels in memory.series:
            for family in (m.scaler_metrics_value, m.scaler_metrics_latency, m.scaler_active, m.scaler_detail_errors):
                _remove(family, labels)
        for family, key in memory.predicted:
            _remove(family, key)
        rtype = _resource_type(ref.kind)
        for per_object in (m.desired_replicas, m.current_replicas, m.ready_replicas, m.activation_latency):
            _remove(per_object, (ref.namespace, rtype, ref.name))
        _remove(m.scale_loop_latency, (ref.namespace, rtype, ref.name))
        _remove(m.scaled_object_paused, (ref.namespace, ref.name))
        for hpa_family in (m.hpa_current_replicas, m.hpa_desired_replicas, m.hpa_max_replicas):
            _remove(hpa_family, (ref.namespace, f"keda-hpa-{ref.name}"))
        _remove(m.scaled_job_errors if ref.kind == "ScaledJob" else m.scaled_object_errors, (ref.namespace, ref.name))
        if memory.registered:
            self.resource_removed(ref.kind, ref.namespace)
            for t in memory.triggers.values():
                m.trigger_registered.labels(t.type).dec()


def _remove(family: Gauge | Counter | Histogram, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        family.remove(*labels)


def metrics_routes(registry: CollectorRegistry) -> list[web.RouteDef]:
    """`GET /metrics` in Prometheus' text format, for any aiohttp app (ebb run's, the operator's)."""

    async def handle(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", handle)]
