"""ebb's /metrics against KEDA's metric contract, assertion by assertion from KEDA's own e2e test of its
Prometheus metrics (kedacore/keda tests/sequential/prometheus_metrics) and the code that defines the series
(pkg/metricscollector/prommetrics.go): names, label values, series that exist at 0, the totals' `type` values.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ebb.observe.keda_names import KEDA_SCALER_NAMES, keda_scaler_name
from ebb.observe.metrics import MetricsObserver, TriggerInfo, git_commit
from ebb.runtime.observer import ObjectRef
from ebb.scalers import available_types
from ebb.scaling.types import TriggerResult

from ._records import poll

SO = ObjectRef("ScaledObject", "keda-ns", "metrics-so")
CPU_SO = ObjectRef("ScaledObject", "keda-ns", "metrics-resource-so")
SJ = ObjectRef("ScaledJob", "keda-ns", "metrics-sj")
WRONG = ObjectRef("ScaledObject", "keda-ns", "metrics-wrong-so")
OTHER_NS = ObjectRef("ScaledObject", "other-ns", "cron-so")


def _value(metric: str, value: float | None, *, active: bool = True, error: str | None = None) -> TriggerResult:
    return TriggerResult(metric_name=metric, target=1.0, value=value, active=active, error=error, read_seconds=0.0)


def _cpu() -> TriggerResult:
    return TriggerResult(metric_name="s0-cpu", target=50.0, metric_type="Utilization", value=0.0, active=True,
                         resource=True)  # fmt: skip


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(obs: MetricsObserver) -> Samples:
    text = generate_latest(obs.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _series(samples: Samples, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for (n, labels), v in samples.items():
        if n == name:
            yield dict(labels), v


@pytest.fixture
def fleet() -> MetricsObserver:
    """KEDA's e2e set-up in ebb's terms: a ScaledObject and a ScaledJob whose metric is 4, a CPU ScaledObject
    with a named trigger, a ScaledObject in error, a cron one elsewhere, TriggerAuthentications."""
    obs = MetricsObserver()
    obs.register(SO, [TriggerInfo(0, "redis")])
    obs.register(CPU_SO, [TriggerInfo(0, "cpu", "metrics-resource-cpu-scaler")])
    obs.register(SJ, [TriggerInfo(0, "postgresql")])
    obs.register(WRONG, [TriggerInfo(0, "prometheus", "wrong-scaler")])
    obs.register(OTHER_NS, [TriggerInfo(0, "cron")])
    obs.resource_added("TriggerAuthentication", "keda-ns")
    obs.resource_added("TriggerAuthentication", "keda-ns")
    obs.resource_added("ClusterTriggerAuthentication", "")
    obs.poll(poll(SO, 10.0, (_value("s0-redis-queue", 4.0),), current=1, desired=1))
    obs.poll(poll(CPU_SO, 10.0, (_cpu(),), current=1, desired=1))
    obs.poll(poll(SJ, 10.0, (_value("s0-postgresql", 4.0),), current=1, desired=1))
    obs.poll(poll(OTHER_NS, 10.0, (_value("s0-cron-Etc-UTC-00xxx-59xxx", 1.0),), current=1, desired=1))
    return obs


def test_scaler_metric_value_and_latency(fleet: MetricsObserver) -> None:
    """testScalerMetricValue / testScalerMetricLatency: the ScaledObject's and ScaledJob's value is 4."""
    samples = _scrape(fleet)
    values = {lab["scaledObject"]: v for lab, v in _series(samples, "keda_scaler_metrics_value")}
    assert values[SO.name] == 4 and values[SJ.name] == 4
    for lab, v in _series(samples, "keda_scaler_metrics_latency_seconds"):
        if lab["scaledObject"] in (SO.name, SJ.name):
            assert v == pytest.approx(0.0, abs=0.001)


def test_unnamed_triggers_carry_kedas_scaler_type_names(fleet: MetricsObserver) -> None:
    samples = _scrape(fleet)
    scalers = {lab["scaledObject"]: lab["scaler"] for lab, _ in _series(samples, "keda_scaler_active")}
    assert scalers == {
        SO.name: "redisScaler",
        SJ.name: "postgreSQLScaler",
        OTHER_NS.name: "cronScaler",
        CPU_SO.name: "metrics-resource-cpu-scaler",  # a named trigger keeps its name
    }


def test_cpu_trigger_exports_only_scaler_active_with_metric_cpu(fleet: MetricsObserver) -> None:
    """testScalerActiveMetric: keda_scaler_active{metric="cpu", triggerIndex="0", type="scaledobject"} == 1."""
    samples = _scrape(fleet)
    expected = {"namespace": "keda-ns", "scaledObject": CPU_SO.name, "scaler": "metrics-resource-cpu-scaler",
                "triggerIndex": "0", "metric": "cpu", "type": "scaledobject"}  # fmt: skip
    assert any(lab == expected and v == 1 for lab, v in _series(samples, "keda_scaler_active"))
    others = ("keda_scaler_metrics_value", "keda_scaler_metrics_latency_seconds", "keda_scaler_detail_errors_total")
    for family in others:
        assert not [lab for lab, _ in _series(samples, family) if lab["scaledObject"] == CPU_SO.name], family
    # Every active scaler of the healthy objects is 1.
    for lab, v in _series(samples, "keda_scaler_active"):
        assert v == 1, lab


def test_error_counters_exist_at_zero_then_grow(fleet: MetricsObserver) -> None:
    """KEDA creates the error counters at 0 for every healthy trigger and object; testScaledObjectErrors,
    testScaledJobErrors, testScalerErrors then see them grow."""
    samples = _scrape(fleet)
    so_errors = {lab["scaledObject"]: v for lab, v in _series(samples, "keda_scaled_object_errors_total")}
    assert so_errors == {SO.name: 0, CPU_SO.name: 0, WRONG.name: 0, OTHER_NS.name: 0}
    assert {lab["scaledJob"]: v for lab, v in _series(samples, "keda_scaled_job_errors_total")} == {SJ.name: 0}
    detail = {(lab["scaledObject"], lab["scaler"]): v for lab, v in _series(samples, "keda_scaler_detail_errors_total")}
    assert detail == {(SO.name, "redisScaler"): 0, (SJ.name, "postgreSQLScaler"): 0, (OTHER_NS.name, "cronScaler"): 0}

    for t in (20.0, 30.0):
        fleet.poll(poll(WRONG, t, (_value("s0-prometheus", None, error="bad query"),), current=0, desired=0))
        fleet.poll(poll(SJ, t, (_value("s0-postgresql", None, error="refused"),), current=0, desired=0))
    after = _scrape(fleet)
    wrong = {"namespace": "keda-ns", "scaledObject": WRONG.name}
    assert after[("keda_scaled_object_errors_total", tuple(sorted(wrong.items())))] == 2
    assert after[("keda_scaled_job_errors_total", (("namespace", "keda-ns"), ("scaledJob", SJ.name)))] == 2
    detail = {(lab["scaledObject"], lab["scaler"]): v for lab, v in _series(after, "keda_scaler_detail_errors_total")}
    assert detail[(WRONG.name, "wrong-scaler")] == 2 and detail[(SJ.name, "postgreSQLScaler")] == 2
    assert detail[(SO.name, "redisScaler")] == 0


def test_scale_loop_latency_for_both_kinds(fleet: MetricsObserver) -> None:
    """testScalableObjectMetrics: scale loop latency is reported with type scaledobject and scaledjob."""
    types = {lab["type"] for lab, _ in _series(_scrape(fleet), "keda_internal_scale_loop_latency_seconds")}
    assert types == {"scaledobject", "scaledjob"}


def test_trigger_and_resource_totals(fleet: MetricsObserver) -> None:
    """checkTriggerTotalValues / checkCRTotalValues: every trigger type and every CR type per namespace, counted
    as the cluster holds them; TriggerAuthentications too, a ClusterTriggerAuthentication in "default"."""
    samples = _scrape(fleet)
    triggers = {lab["type"]: v for lab, v in _series(samples, "keda_trigger_registered_total")}
    assert triggers == {"redis": 1, "cpu": 1, "postgresql": 1, "prometheus": 1, "cron": 1}
    resources = {(lab["type"], lab["namespace"]): v for lab, v in _series(samples, "keda_resource_registered_total")}
    assert resources == {
        ("scaled_object", "keda-ns"): 3,
        ("scaled_object", "other-ns"): 1,
        ("scaled_job", "keda-ns"): 1,
        ("trigger_authentication", "keda-ns"): 2,
        ("cluster_trigger_authentication", "default"): 1,
    }
    fleet.removed(SO)
    fleet.resource_removed("TriggerAuthentication", "keda-ns")
    samples = _scrape(fleet)
    resources = {(lab["type"], lab["namespace"]): v for lab, v in _series(samples, "keda_resource_registered_total")}
    assert resources[("scaled_object", "keda-ns")] == 2 and resources[("trigger_authentication", "keda-ns")] == 1
    assert {lab["type"]: v for lab, v in _series(samples, "keda_trigger_registered_total")}["redis"] == 0


def test_build_info_names_the_commit(fleet: MetricsObserver) -> None:
    """checkBuildInfo: git_commit is `git rev-parse HEAD` of the checkout, goos linux, value 1."""
    [(labels, v)] = list(_series(_scrape(fleet), "keda_build_info"))
    assert v == 1 and labels["goos"] == "linux"
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        assert labels["git_commit"] == "unknown"
        return
    assert labels["git_commit"] == head.stdout.strip() == git_commit()


def test_paused_gauge(fleet: MetricsObserver) -> None:
    """testScaledObjectPausedMetric: 1 while paused, 0 after."""
    fleet.poll(poll(SO, 40.0, (_value("s0-redis-queue", 4.0),), current=1, desired=1, paused=True))
    key = ("keda_scaled_object_paused", (("namespace", "keda-ns"), ("scaledObject", SO.name)))
    assert _scrape(fleet)[key] == 1
    fleet.poll(poll(SO, 50.0, (_value("s0-redis-queue", 4.0),), current=1, desired=1))
    assert _scrape(fleet)[key] == 0


@pytest.mark.parametrize(
    ("trigger_type", "name"),
    [
        ("redis", "redisScaler"),
        ("redis-streams", "redisStreamsScaler"),
        ("postgresql", "postgreSQLScaler"),
        ("mysql", "mySQLScaler"),
        ("cron", "cronScaler"),
        ("prometheus", "prometheusScaler"),
        ("metrics-api", "metricsAPIScaler"),
        ("rabbitmq", "rabbitMQScaler"),
        ("nats-jetstream", "natsJetStreamScaler"),
        ("external-push", "externalPushScaler"),
        ("aws-sqs-queue", "awsSqsQueueScaler"),
        ("azure-queue", "azureQueueScaler"),
        ("etcd", "etcdScaler"),
        ("cpu", "cpuMemoryScaler"),
        ("gcp-pubsub", "pubsubScaler"),
        ("sqlite", "sqliteScaler"),  # not a KEDA type: camelCase + Scaler
        ("foo-bar-baz", "fooBarBazScaler"),
    ],
)
def test_keda_scaler_names(trigger_type: str, name: str) -> None:
    assert keda_scaler_name(trigger_type) == name


def test_every_ebb_trigger_type_has_a_scaler_name() -> None:
    for trigger_type in available_types():
        assert keda_scaler_name(trigger_type).endswith("Scaler"), trigger_type
    assert all(v.lower().endswith("scaler") for v in KEDA_SCALER_NAMES.values())


def test_ebb_run_counts_the_authentications_it_loaded(tmp_path: Path) -> None:
    """`ebb run`'s wiring: (Cluster)TriggerAuthentications and CloudEventSources from the files are counted."""
    from ebb.observe.services import Services, counted_resources
    from ebb.runtime.observer import Observer
    from ebb.spec.loader import load_text
    from tests.observe.test_grafana import free_port
    from tests.runtime._support import make_backlog, scaled_group

    make_backlog(tmp_path / "w.db")
    auths = (
        "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: a, namespace: team}\n"
        "spec: {env: [{parameter: p, name: P}]}\n"
        "---\napiVersion: keda.sh/v1alpha1\nkind: ClusterTriggerAuthentication\nmetadata: {name: c}\n"
        "spec: {env: [{parameter: p, name: P}]}\n"
    )
    loaded = load_text(scaled_group("app", tmp_path / "w.db") + auths)
    assert loaded.ok, loaded.errors
    services = Services(tmp_path, metrics_port=free_port(), history=False)
    services.observers(Observer(), [*loaded.resources.scaled_objects()], counted_resources(loaded.objects))
    assert services.metrics is not None
    samples = _scrape(services.metrics)
    resources = {(lab["type"], lab["namespace"]): v for lab, v in _series(samples, "keda_resource_registered_total")}
    assert resources == {
        ("scaled_object", "default"): 1,
        ("trigger_authentication", "team"): 1,
        ("cluster_trigger_authentication", "default"): 1,
    }
