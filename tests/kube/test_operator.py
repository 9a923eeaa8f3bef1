"""The ScaledObject controller driven through lightkube against kmock, a fake Kubernetes API server.

kmock is a mock of a cluster (no kube-controller-manager, no real HPA): these tests assert on the objects
the controller leaves in it. The scaler is real: a Redis list on the local server.
"""

from __future__ import annotations

import base64
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
import redis.asyncio as aioredis

from ebb.kube.admission import ConflictIndex
from ebb.kube.client import client_for_url
from ebb.kube.operator import OperatorOptions, ScaledObjectController, _KubeObserver, retry_delay
from ebb.observe.metrics import MetricsObserver
from ebb.observe.services import Services
from ebb.runtime.observer import ObjectRef

NS = "ns"
SO_RES = km.resource("keda.sh/v1alpha1/scaledobjects")
DEPLOY_RES = km.resource("apps/v1/deployments")
HPA_RES = km.resource("autoscaling/v2/horizontalpodautoscalers")
EVENT_RES = km.resource("v1/events")
SECRET_RES = km.resource("v1/secrets")
TA_RES = km.resource("keda.sh/v1alpha1/triggerauthentications")
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_list() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    key = f"ebb-op-{uuid.uuid4().hex}"
    yield client, key
    await client.delete(key)
    await client.aclose()


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator) -> km.KubernetesEmulator:
    for res in (SO_RES, DEPLOY_RES, HPA_RES, EVENT_RES, SECRET_RES, TA_RES, km.resource("v1/configmaps")):
        kmock.resources[res] = {}
    kmock.resources[km.resource("apiextensions.k8s.io/v1/customresourcedefinitions")] = {}
    kmock.objects[DEPLOY_RES, NS, "web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 0,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [
                                {"name": "REDIS_HOST", "value": "127.0.0.1"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                        }
                    ]
                }
            },
        },
        "status": {"replicas": 0},
    }
    return kmock


@pytest.fixture
async def controller(cluster: km.KubernetesEmulator) -> AsyncIterator[ScaledObjectController]:
    client = client_for_url(str(cluster.url))
    ctl = ScaledObjectController(client, OperatorOptions(), clock=Clock())
    ctl.autostart = False
    yield ctl
    await ctl.close()
    await client.aclose()


def scaled_object(key: str, *, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "worker", "namespace": NS, "uid": "uid-1", "annotations": annotations or {}},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "pollingInterval": 5,
            "cooldownPeriod": 0,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {"hostFromEnv": "REDIS_HOST", "port": "6379", "listName": key, "listLength": "5"},
                }
            ],
            **spec,
        },
    }
    return body


def put(cluster: km.KubernetesEmulator, body: dict[str, Any]) -> dict[str, Any]:
    cluster.objects[SO_RES, NS, body["metadata"]["name"]] = body
    return body


def obj(cluster: km.KubernetesEmulator, res: km.resource, name: str) -> dict[str, Any]:
    return dict(cluster.objects[res, NS, name].raw)


def conditions(cluster: km.KubernetesEmulator, name: str = "worker") -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj(cluster, SO_RES, name)["status"]["conditions"]}


def event_reasons(cluster: km.KubernetesEmulator) -> list[str]:
    return [o.raw["reason"] for (res, _, _), o in cluster.objects.items() if res == EVENT_RES]


async def test_reconcile_creates_the_hpa_and_status_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    await controller.reconcile(put(cluster, scaled_object(key)))
    hpa = obj(cluster, HPA_RES, "keda-hpa-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == f"s0-redis-{key}"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    status = obj(cluster, SO_RES, "worker")["status"]
    assert status["hpaName"] == "keda-hpa-worker"
    assert status["externalMetricNames"] == [f"s0-redis-{key}"]
    assert status["originalReplicaCount"] == 0
    assert status["scaleTargetKind"] == "apps/v1.Deployment"
    assert status["scaleTargetGVKR"]["resource"] == "deployments"
    assert status["triggersTypes"] == "redis"
    assert conditions(cluster)["Ready"]["status"] == "True"
    assert "KEDAScalersStarted" in event_reasons(cluster)


async def test_poll_activates_from_zero_and_serves_metrics_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, *[f"job{i}" for i in range(12)])
    await controller.reconcile(put(cluster, scaled_object(key)))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 1
    assert conditions(cluster)["Active"]["status"] == "True"
    assert "KEDAScaleTargetActivated" in event_reasons(cluster)
    [value] = await controller.get_metric(NS, f"s0-redis-{key}", {"scaledobject.keda.sh/name": "worker"})
    assert value.value == 12
    assert [m.metric_name for m in controller.list_metrics()] == [f"s0-redis-{key}"]

    await client.delete(key)
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 1  # cooldownPeriod 0: deactivation comes strictly after the last active poll
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 0
    assert conditions(cluster)["Active"]["status"] == "False"


async def test_broken_object_gets_ready_false_naming_the_field_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    body = scaled_object(key)
    body["spec"]["triggers"][0]["metadata"]["listLength"] = "lots"
    await controller.reconcile(put(cluster, body))
    ready = conditions(cluster)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ScaledObjectCheckFailed")
    assert "spec.triggers[0].metadata.listLength" in ready["message"]
    assert "ScaledObjectCheckFailed" in event_reasons(cluster)
    assert (HPA_RES, NS, "keda-hpa-worker") not in cluster.objects
    assert (NS, "worker") not in controller.runtimes


async def test_second_scaled_object_on_one_target_is_refused_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    first = scaled_object(key)
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    await controller.reconcile(put(cluster, first))
    other = scaled_object(key)
    other["metadata"].update(name="other", uid="uid-2", creationTimestamp="2026-01-01T00:00:01Z")
    await controller.reconcile(put(cluster, other))
    ready = conditions(cluster, "other")["Ready"]
    assert ready["status"] == "False"
    assert "already managed by the ScaledObject 'worker'" in ready["message"]
    assert conditions(cluster, "worker")["Ready"]["status"] == "True"


async def test_foreign_hpa_on_the_target_is_refused_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    cluster.objects[HPA_RES, NS, "theirs"] = {
        "metadata": {"name": "theirs", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
    }
    await controller.reconcile(put(cluster, scaled_object(key)))
    assert "already managed by the hpa 'theirs'" in conditions(cluster)["Ready"]["message"]


async def test_paused_object_has_no_hpa_and_pins_replicas_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    await controller.reconcile(put(cluster, scaled_object(key)))
    assert (HPA_RES, NS, "keda-hpa-worker") in cluster.objects
    paused = scaled_object(key, annotations={"autoscaling.keda.sh/paused-replicas": "3"})
    paused["status"] = obj(cluster, SO_RES, "worker")["status"]
    await controller.reconcile(put(cluster, paused))
    assert cluster.objects[HPA_RES, NS, "keda-hpa-worker"].deleted
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 3
    assert conditions(cluster)["Paused"]["status"] == "True"
    assert obj(cluster, SO_RES, "worker")["status"]["pausedReplicaCount"] == 3
    assert (NS, "worker") not in controller.runtimes


async def test_removing_the_pause_annotation_sets_paused_false_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    """Regression (seen on a real cluster): Paused stayed True after the annotation went. KEDA: False,
    ScaledObjectUnpaused, with an Event."""
    _, key = redis_list
    await controller.reconcile(put(cluster, scaled_object(key, annotations={"autoscaling.keda.sh/paused": "true"})))
    assert conditions(cluster)["Paused"]["status"] == "True"
    unpaused = scaled_object(key)
    unpaused["status"] = obj(cluster, SO_RES, "worker")["status"]
    assert await controller.reconcile(put(cluster, unpaused))
    paused = conditions(cluster)["Paused"]
    assert (paused["status"], paused["reason"]) == ("False", "ScaledObjectUnpaused")
    assert paused["message"] == "pause annotation removed for ScaledObject"
    assert "ScaledObjectUnpaused" in event_reasons(cluster)
    assert (HPA_RES, NS, "keda-hpa-worker") in cluster.objects
    assert conditions(cluster)["Ready"]["status"] == "True"


async def test_without_fallback_the_fallback_condition_is_false_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    """Regression: FALLBACK showed Unknown with no reason. KEDA: False, NoFallbackFound."""
    _, key = redis_list
    await controller.reconcile(put(cluster, scaled_object(key)))
    fallback = conditions(cluster)["Fallback"]
    assert (fallback["status"], fallback["reason"]) == ("False", "NoFallbackFound")
    assert fallback["message"] == "No fallbacks are active on this scaled object"


async def test_reconcile_of_an_object_whose_target_is_missing_asks_to_be_retried_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    """Regression: a ScaledObject applied before its Deployment stayed Ready=False. reconcile says "try again"
    (the kopf handler turns that into a retry with backoff); a spec that cannot parse is not retried."""
    _, key = redis_list
    body = scaled_object(key)
    body["spec"]["scaleTargetRef"]["name"] = "later"
    assert not await controller.reconcile(put(cluster, body))
    assert conditions(cluster)["Ready"]["status"] == "False"
    deployment = dict(obj(cluster, DEPLOY_RES, "web"))
    deployment["metadata"] = {"name": "later", "namespace": NS}
    cluster.objects[DEPLOY_RES, NS, "later"] = deployment
    assert await controller.reconcile(obj(cluster, SO_RES, "worker") | {"spec": body["spec"]})
    assert conditions(cluster)["Ready"]["status"] == "True"
    broken = scaled_object(key, pollingInterval="soon")
    assert await controller.reconcile(put(cluster, broken))
    assert "spec.pollingInterval" in conditions(cluster)["Ready"]["message"]


def test_retry_delay_backs_off_exponentially_up_to_five_minutes() -> None:
    assert [retry_delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(9) == 300.0 and retry_delay(10_000) == 300.0


async def test_direct_mode_scales_without_an_hpa_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, *[f"job{i}" for i in range(12)])
    cluster.objects[DEPLOY_RES, NS, "web"].patch({"spec": {"replicas": 1}, "status": {"replicas": 1}})
    await controller.reconcile(put(cluster, scaled_object(key, annotations={"ebb.dev/scaling": "direct"})))
    assert (HPA_RES, NS, "keda-hpa-worker") not in cluster.objects
    await controller.runtimes[(NS, "worker")].loop.poll_once()
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 3  # ceil(12 / 5)


async def test_trigger_authentication_secret_is_read_from_the_cluster_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    cluster.objects[SECRET_RES, NS, "redis"] = {
        "metadata": {"name": "redis", "namespace": NS},
        "data": {"host": base64.b64encode(b"127.0.0.1").decode()},
    }
    cluster.objects[TA_RES, NS, "redis-auth"] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "redis-auth", "namespace": NS},
        "spec": {"secretTargetRef": [{"parameter": "host", "name": "redis", "key": "host"}]},
    }
    body = scaled_object(key)
    body["spec"]["triggers"][0]["metadata"] = {"listName": key, "port": "6379"}
    body["spec"]["triggers"][0]["authenticationRef"] = {"name": "redis-auth"}
    await controller.reconcile(put(cluster, body))
    assert conditions(cluster)["Ready"]["status"] == "True", conditions(cluster)["Ready"]
    result = await controller.runtimes[(NS, "worker")].loop.poll_once()
    assert result is not None and "s0-redis-" + key in result.metric_values


async def test_a_failing_scaler_reaches_the_log_without_its_secrets_against_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    redis_list: tuple[aioredis.Redis, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression (real cluster): a scaler failure reached status and Events but not the log; and redis-py's
    "Connect call failed ('host', port)" carried an address that came from a Secret into the Event."""
    _, key = redis_list
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    cluster.objects[SECRET_RES, NS, "redis"] = {
        "metadata": {"name": "redis", "namespace": NS},
        "data": {"address": base64.b64encode(address.encode()).decode()},
    }
    cluster.objects[TA_RES, NS, "redis-auth"] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "redis-auth", "namespace": NS},
        "spec": {"secretTargetRef": [{"parameter": "address", "name": "redis", "key": "address"}]},
    }
    body = scaled_object(key)
    body["spec"]["triggers"][0]["metadata"] = {"listName": key, "listLength": "5"}
    body["spec"]["triggers"][0]["authenticationRef"] = {"name": "redis-auth"}
    caplog.set_level(logging.INFO, logger="ebb")
    assert await controller.reconcile(put(cluster, body))
    await controller.runtimes[(NS, "worker")].loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    [line] = [r for r in caplog.records if "KEDAScalerFailed" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "ScaledObject ns/worker" in line.getMessage() and f"s0-redis-{key}" in line.getMessage()
    [event] = [
        o.raw
        for (res, _, _), o in cluster.objects.items()
        if res == EVENT_RES and o.raw["reason"] == "KEDAScalerFailed"
    ]
    host, port = address.split(":")
    for text in (line.getMessage(), event["message"], caplog.text):
        assert host not in text and port not in text


async def test_a_problem_that_persists_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Seen on a real cluster: "push unavailable" (retried with backoff) was a third of the log."""
    client = client_for_url("http://127.0.0.1:1")  # never called
    observer = _KubeObserver(ScaledObjectController(client), {"name": "worker"})
    ref = ObjectRef("ScaledObject", NS, "worker")
    caplog.set_level(logging.DEBUG, logger="ebb.operator")
    for message in ("push unavailable: x", "push unavailable: x", "push unavailable: y"):
        observer.problem(ref, message, T0)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ebb.operator"]
    assert levels == [
        (logging.WARNING, "ScaledObject ns/worker: push unavailable: x"),
        (logging.DEBUG, "ScaledObject ns/worker: push unavailable: x"),
        (logging.WARNING, "ScaledObject ns/worker: push unavailable: y"),
    ]
    await client.aclose()


async def test_delete_restores_the_original_replica_count_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    cluster.objects[DEPLOY_RES, NS, "web"].patch({"spec": {"replicas": 4}})
    body = scaled_object(key, advanced={"restoreToOriginalReplicaCount": True})
    await controller.reconcile(put(cluster, body))
    assert obj(cluster, SO_RES, "worker")["status"]["originalReplicaCount"] == 4
    cluster.objects[DEPLOY_RES, NS, "web"].patch({"spec": {"replicas": 9}})
    await controller.delete(obj(cluster, SO_RES, "worker"))
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4
    assert (NS, "worker") not in controller.runtimes
    assert "ScaledObjectDeleted" in event_reasons(cluster)


async def test_cpu_and_memory_triggers_become_resource_metrics_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    body = scaled_object(key, minReplicaCount=1)
    body["spec"]["triggers"] += [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}},
        {"type": "memory", "metricType": "AverageValue", "metadata": {"value": "512Mi", "containerName": "app"}},
    ]
    await controller.reconcile(put(cluster, body))
    metrics = obj(cluster, HPA_RES, "keda-hpa-worker")["spec"]["metrics"]
    by_type = {m["type"]: m for m in metrics}
    assert by_type["Resource"]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }
    assert by_type["ContainerResource"]["containerResource"] == {
        "name": "memory",
        "container": "app",
        "target": {"type": "AverageValue", "averageValue": str(512 * 1024 * 1024)},
    }
    assert conditions(cluster)["Ready"]["status"] == "True"
    assert obj(cluster, SO_RES, "worker")["status"]["resourceMetricNames"] == ["cpu", "memory"]


async def test_operator_feeds_prometheus_metrics_and_history_like_ebb_run_against_fake_apiserver(
    cluster: km.KubernetesEmulator, redis_list: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    client, key = redis_list
    await client.rpush(key, *[f"job{i}" for i in range(7)])
    services = Services(tmp_path, metrics_port=0, history=False, memory_history=True)
    services.metrics = MetricsObserver()  # the registry /metrics would serve, without opening a port here
    api = client_for_url(str(cluster.url))
    ctl = ScaledObjectController(api, OperatorOptions(services=services), clock=Clock())
    ctl.autostart = False
    try:
        await ctl.reconcile(put(cluster, scaled_object(key)))
        await ctl.runtimes[(NS, "worker")].loop.poll_once()
        value = services.metrics.registry.get_sample_value(
            "keda_scaler_metrics_value",
            {
                "namespace": NS,
                "scaledObject": "worker",
                "metric": f"s0-redis-{key}",
                "scaler": "redisScaler",
                "triggerIndex": "0",
                "type": "scaledobject",
            },
        )
        assert value == 7
        assert services.history is not None and services.store is not None
        await services.history.flush()
        (info,) = services.store.objects()
        assert (info["namespace"], info["name"], info["desired"]) == (NS, "worker", 1)

        await ctl.delete(obj(cluster, SO_RES, "worker"))
        gone = services.metrics.registry.get_sample_value(
            "keda_scaler_metrics_value",
            {
                "namespace": NS,
                "scaledObject": "worker",
                "metric": f"s0-redis-{key}",
                "scaler": "redisScaler",
                "triggerIndex": "0",
                "type": "scaledobject",
            },
        )
        assert gone is None  # a deleted object's series go with it
    finally:
        await ctl.close()
        await api.aclose()
        await services.stop()


async def test_status_reports_triggers_activity_and_hpa_health_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b")
    await controller.reconcile(put(cluster, scaled_object(key)))
    # kmock runs no HPA controller: play its part and report the HPA healthy.
    hpa = obj(cluster, HPA_RES, "keda-hpa-worker")
    hpa["status"] = {"conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}
    cluster.objects[HPA_RES, NS, "keda-hpa-worker"] = hpa
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    status = obj(cluster, SO_RES, "worker")["status"]
    assert status["triggersActivity"] == {f"s0-redis-{key}": {"isActive": True}}
    assert (conditions(cluster)["HPAActive"]["status"], conditions(cluster)["HPAActive"]["reason"]) == (
        "True",
        "HPAActive",
    )

    await client.delete(key)
    hpa["status"] = {
        "conditions": [
            {"type": "ScalingActive", "status": "False", "reason": "FailedGetExternalMetric", "message": "boom"}
        ]
    }
    cluster.objects[HPA_RES, NS, "keda-hpa-worker"] = hpa
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 1
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    status = obj(cluster, SO_RES, "worker")["status"]
    assert status["triggersActivity"] == {f"s0-redis-{key}": {"isActive": False}}
    hpa_active = conditions(cluster)["HPAActive"]
    assert (hpa_active["status"], hpa_active["reason"]) == ("False", "FailedGetExternalMetric")
    assert "boom" in hpa_active["message"]


def status_patches(cluster: km.KubernetesEmulator) -> int:
    return sum(1 for r in cluster if r.method == "PATCH" and r.subresource == "status" and r.resource == SO_RES)


async def test_a_poll_that_changes_nothing_writes_no_status_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    await controller.reconcile(put(cluster, scaled_object(key)))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    patches_before = status_patches(cluster)
    await runtime.loop.poll_once()
    await controller._observers[(NS, "worker")].drain()
    patches_after = status_patches(cluster)
    assert patches_before >= 1
    assert patches_after == patches_before


async def test_with_watches_running_a_poll_reads_status_from_them_not_the_api_against_fake_apiserver(
    cluster: km.KubernetesEmulator, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a")
    conflicts = ConflictIndex()
    conflicts.replace([], [])  # loaded: the watches cover every namespace
    api = client_for_url(str(cluster.url))
    ctl = ScaledObjectController(api, OperatorOptions(conflicts=conflicts), clock=Clock())
    ctl.autostart = False
    try:
        await ctl.reconcile(put(cluster, scaled_object(key)))
        # What kopf's event handlers hand over (see register_handlers): the objects as the watch saw them.
        ctl.observe("ScaledObject", obj(cluster, SO_RES, "worker"))
        hpa = obj(cluster, HPA_RES, "keda-hpa-worker")
        hpa["status"] = {"conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}
        ctl.observe("HorizontalPodAutoscaler", hpa)
        before = len(list(cluster))
        await ctl.runtimes[(NS, "worker")].loop.poll_once()
        await ctl._observers[(NS, "worker")].drain()
        during = [(r.method, r.resource) for r in list(cluster)[before:]]
        assert ("GET", SO_RES) not in during and ("GET", HPA_RES) not in during
        assert conditions(cluster)["HPAActive"]["status"] == "True"
        assert obj(cluster, SO_RES, "worker")["status"]["triggersActivity"] == {f"s0-redis-{key}": {"isActive": True}}

        # The HPA is deleted (the watch says so): HPAActive is left as it was, and still no GET.
        ctl.observe("HorizontalPodAutoscaler", hpa, deleted=True)
        before = len(list(cluster))
        await ctl.runtimes[(NS, "worker")].loop.poll_once()
        await ctl._observers[(NS, "worker")].drain()
        assert ("GET", HPA_RES) not in [(r.method, r.resource) for r in list(cluster)[before:]]
        assert conditions(cluster)["HPAActive"]["status"] == "True"
    finally:
        await ctl.close()
        await api.aclose()
