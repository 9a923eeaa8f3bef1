"""The ScaledJob controller driven through lightkube against kmock, a fake Kubernetes API server.

kmock has no Job controller and no generateName: a small subclass names created objects from generateName as
the API server does. Jobs and pods that "ran" are put into it by the tests. The trigger is real: a Redis list
on the local server, whose host comes from the job template's container env.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
import redis.asyncio as aioredis

from ebb import __version__
from ebb.kube.client import client_for_url
from ebb.kube.jobs import ScaledJobController, build_job, history_to_delete, is_pending
from ebb.kube.operator import OperatorOptions
from ebb.observe.metrics import MetricsObserver
from ebb.observe.services import Services


class GenerateNameEmulator(km.KubernetesEmulator):
    """kmock plus the API server's generateName: a created object without a name gets prefix + random suffix."""

    async def _handle(self, request: km.Request) -> Any:
        if request.action == km.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return await super()._handle(request)


pytestmark = pytest.mark.kmock(cls=GenerateNameEmulator)

NS = "ns"
SJ_RES = km.resource("keda.sh/v1alpha1/scaledjobs")
JOB_RES = km.resource("batch/v1/jobs")
POD_RES = km.resource("v1/pods")
EVENT_RES = km.resource("v1/events")
T0 = 1_700_000_000.0


@pytest.fixture
async def redis_list() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    key = f"ebb-sj-{uuid.uuid4().hex}"
    yield client, key
    await client.delete(key)
    await client.aclose()


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator) -> km.KubernetesEmulator:
    for res in (SJ_RES, JOB_RES, POD_RES, EVENT_RES, km.resource("v1/secrets"), km.resource("v1/configmaps")):
        kmock.resources[res] = {}
    kmock.resources[km.resource("keda.sh/v1alpha1/triggerauthentications")] = {}
    return kmock


@pytest.fixture
async def controller(cluster: km.KubernetesEmulator) -> AsyncIterator[ScaledJobController]:
    client = client_for_url(str(cluster.url))
    ctl = ScaledJobController(client, OperatorOptions(), clock=lambda: T0)
    ctl.autostart = False
    yield ctl
    await ctl.close()
    await client.aclose()


def scaled_job(
    key: str,
    *,
    generation: int = 1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {
            "name": "batch",
            "namespace": NS,
            "uid": "sj-uid",
            "generation": generation,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {
            "jobTargetRef": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": {"app": "batch"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "work",
                                "image": "busybox",
                                "command": ["sh", "-c", "echo hi"],
                                "env": [{"name": "REDIS_HOST", "value": "127.0.0.1"}],
                            }
                        ]
                    },
                },
            },
            "pollingInterval": 5,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {"hostFromEnv": "REDIS_HOST", "port": "6379", "listName": key, "listLength": "1"},
                }
            ],
            **spec,
        },
    }


def put(cluster: km.KubernetesEmulator, body: dict[str, Any]) -> dict[str, Any]:
    cluster.objects[SJ_RES, NS, body["metadata"]["name"]] = body
    return body


def jobs(cluster: km.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return {name: dict(o.raw) for (res, _, name), o in cluster.objects.items() if res == JOB_RES and not o.deleted}


def put_job(
    cluster: km.KubernetesEmulator,
    name: str,
    *,
    finished: str | None = None,
    at: str = "2024-01-01T00:00:00Z",
    generation: str = "1",
    pod: dict[str, Any] | None = None,
) -> None:
    status: dict[str, Any] = {}
    if finished is not None:
        status["conditions"] = [{"type": finished, "status": "True", "lastTransitionTime": at}]
        if finished == "Complete":
            status["completionTime"] = at
    cluster.objects[JOB_RES, NS, name] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"scaledjob.keda.sh/name": "batch"},
            "annotations": {"scaledjob.keda.sh/generation": generation},
        },
        "status": status,
    }
    if pod is not None:
        cluster.objects[POD_RES, NS, f"{name}-pod"] = {
            "metadata": {"name": f"{name}-pod", "namespace": NS, "labels": {"job-name": name}},
            "status": pod,
        }


def conditions(cluster: km.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in cluster.objects[SJ_RES, NS, "batch"].raw["status"]["conditions"]}


def events(cluster: km.KubernetesEmulator) -> list[tuple[str, str, str]]:
    return [
        (o.raw["reason"], o.raw["type"], o.raw["message"])
        for (res, _, _), o in cluster.objects.items()
        if res == EVENT_RES
    ]


async def test_jobs_are_created_with_keda_metadata_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b", "c")
    body = scaled_job(
        key,
        generation=4,
        labels={"team": "data", "noisy": "x", "argocd.argoproj.io/instance": "app"},
        annotations={"scaledjob.keda.sh/job-excluded-labels": "noisy,argocd.argoproj.io/instance", "note": "n"},
    )
    await controller.reconcile(put(cluster, body))
    assert conditions(cluster)["Ready"]["status"] == "True"
    decision = await controller.poll_once((NS, "batch"))
    assert decision is not None and decision.jobs_to_create == 3

    created = jobs(cluster)
    assert len(created) == 3
    for name, job in created.items():
        meta = job["metadata"]
        assert name.startswith("batch-") and meta["generateName"] == "batch-"
        assert meta["labels"] == {
            "app.kubernetes.io/name": "batch",
            "app.kubernetes.io/version": __version__,
            "app.kubernetes.io/part-of": "batch",
            "app.kubernetes.io/managed-by": "keda-operator",
            "scaledjob.keda.sh/name": "batch",
            "team": "data",
        }
        assert meta["annotations"] == {
            "scaledjob.keda.sh/generation": "4",
            "scaledjob.keda.sh/job-excluded-labels": "noisy,argocd.argoproj.io/instance",
            "note": "n",
        }
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "name": "batch",
                "uid": "sj-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert job["spec"]["backoffLimit"] == 2
        template = job["spec"]["template"]
        assert template["metadata"]["labels"] == {"app": "batch", "scaledjob.keda.sh/name": "batch"}
        assert template["spec"]["restartPolicy"] == "OnFailure"
        assert template["spec"]["containers"][0]["command"] == ["sh", "-c", "echo hi"]

    status = cluster.objects[SJ_RES, NS, "batch"].raw["status"]
    assert conditions(cluster)["Active"]["status"] == "True"
    assert status["lastActiveTime"] == "2023-11-14T22:13:20Z"
    assert status["triggersTypes"] == "redis"
    assert ("KEDAJobsCreated", "Normal", "Created 3 jobs") in events(cluster)
    assert "ScaledJobActive" in [e[0] for e in events(cluster)]
    assert "ScaledJobReady" in [e[0] for e in events(cluster)]


@pytest.mark.parametrize(
    ("strategy", "pending_conditions", "expected"),
    [
        # queue 5; unfinished: run-1 (pod Running), wait-1 (no pod) -> running 2, pending 1
        ("default", [], 3),  # 5 - running 2
        ("accurate", [], 4),  # 5 - pending 1
        # with pendingPodConditions, run-1's pod lacks Ready=True: both unfinished Jobs are pending
        ("accurate", ["Ready"], 3),
    ],
)
async def test_running_and_pending_jobs_are_counted_against_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledJobController,
    redis_list: tuple[aioredis.Redis, str],
    strategy: str,
    pending_conditions: list[str],
    expected: int,
) -> None:
    client, key = redis_list
    await client.rpush(key, *[f"j{i}" for i in range(5)])
    put_job(cluster, "done-1", finished="Complete", pod={"phase": "Succeeded"})
    put_job(cluster, "failed-1", finished="Failed")
    put_job(cluster, "run-1", pod={"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]})
    put_job(cluster, "wait-1", pod={"phase": "Pending"})
    cluster.objects[JOB_RES, NS, "other"] = {"metadata": {"name": "other", "namespace": NS, "labels": {}}}
    scaling = {"strategy": strategy, "pendingPodConditions": pending_conditions}
    await controller.reconcile(put(cluster, scaled_job(key, scalingStrategy=scaling)))
    decision = await controller.poll_once((NS, "batch"))
    assert decision is not None
    assert decision.jobs_to_create == expected
    assert len(jobs(cluster)) == 5 + expected


async def test_history_beyond_the_limits_is_deleted_oldest_first_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    put_job(cluster, "ok-old", finished="Complete", at="2024-01-01T00:00:01Z")
    put_job(cluster, "ok-new", finished="Complete", at="2024-01-01T00:00:03Z")
    put_job(cluster, "ok-mid", finished="Complete", at="2024-01-01T00:00:02Z")
    put_job(cluster, "bad-old", finished="Failed", at="2024-01-01T00:00:01Z")
    put_job(cluster, "bad-new", finished="Failed", at="2024-01-01T00:00:05Z")
    put_job(cluster, "running", pod={"phase": "Running"})
    body = scaled_job(key, successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1)
    await controller.reconcile(put(cluster, body))
    decision = await controller.poll_once((NS, "batch"))
    assert decision is not None and not decision.active
    assert set(jobs(cluster)) == {"ok-new", "bad-new", "running"}
    deletes = [r for r in cluster if r.action == km.action.DELETE]
    assert {r.params.get("propagationPolicy") for r in deletes} == {"Background"}
    assert conditions(cluster)["Active"]["status"] == "False"


@pytest.mark.parametrize(
    ("rollout", "kept"),
    [
        ({}, {"new"}),  # immediate is the default
        ({"rollout": {"strategy": "gradual"}}, {"old", "unlabelled", "new"}),
        ({"rolloutStrategy": "gradual"}, {"old", "unlabelled", "new"}),
    ],
)
async def test_rollout_deletes_jobs_of_previous_generations_against_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledJobController,
    redis_list: tuple[aioredis.Redis, str],
    rollout: dict[str, Any],
    kept: set[str],
) -> None:
    _, key = redis_list
    put_job(cluster, "old", generation="1")
    put_job(cluster, "new", generation="2")
    put_job(cluster, "unlabelled", generation="1")
    del cluster.objects[JOB_RES, NS, "unlabelled"].raw["metadata"]["annotations"]
    await controller.reconcile(put(cluster, scaled_job(key, generation=2, **rollout)))
    assert set(jobs(cluster)) == kept
    reasons = [e[0] for e in events(cluster)]
    assert ("ScaledJobRolloutCleanupCompleted" in reasons) == (len(kept) == 1)


async def test_rollout_foreground_propagation_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    put_job(cluster, "old", generation="1")
    body = scaled_job(key, generation=2, rollout={"propagationPolicy": "foreground"})
    await controller.reconcile(put(cluster, body))
    [delete] = [r for r in cluster if r.action == km.action.DELETE]
    assert delete.params.get("propagationPolicy") == "Foreground"


async def test_paused_scaled_job_creates_nothing_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b")
    await controller.reconcile(put(cluster, scaled_job(key, annotations={"autoscaling.keda.sh/paused": "true"})))
    assert (NS, "batch") not in controller.runtimes
    assert await controller.poll_once((NS, "batch")) is None
    assert jobs(cluster) == {}
    assert conditions(cluster)["Paused"]["status"] == "True"
    assert ("ScaledJobPaused", "Normal", "ScaledJob is paused") in events(cluster)

    resumed = scaled_job(key)
    resumed["status"] = cluster.objects[SJ_RES, NS, "batch"].raw["status"]
    await controller.reconcile(put(cluster, resumed))
    assert conditions(cluster)["Paused"]["status"] == "False"
    assert "ScaledJobUnpaused" in [e[0] for e in events(cluster)]
    decision = await controller.poll_once((NS, "batch"))
    assert decision is not None and decision.jobs_to_create == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["triggers"][0]["metadata"].update(listLength="lots"), "spec.triggers[0].metadata.listLength"),
        (lambda s: s["triggers"][0].update(metricType="Value"), "spec.triggers[0].metricType"),
        (lambda s: s.update(envSourceContainerName="nope"), "envSourceContainerName"),
    ],
)
async def test_broken_scaled_job_gets_ready_false_naming_the_field_against_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledJobController,
    redis_list: tuple[aioredis.Redis, str],
    change: Any,
    field: str,
) -> None:
    _, key = redis_list
    body = scaled_job(key)
    change(body["spec"])
    await controller.reconcile(put(cluster, body))
    ready = conditions(cluster)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ScaledJobCheckFailed")
    assert field in ready["message"]
    assert conditions(cluster)["Active"]["status"] == "Unknown"
    assert any(e[0] == "ScaledJobCheckFailed" and e[1] == "Warning" for e in events(cluster))
    assert (NS, "batch") not in controller.runtimes


async def test_failed_job_creation_posts_a_warning_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a")
    cluster["post", JOB_RES] << 403 << {"kind": "Status", "code": 403, "message": "jobs is forbidden"}
    await controller.reconcile(put(cluster, scaled_job(key)))
    await controller.poll_once((NS, "batch"))
    assert any(e[0] == "KEDAJobCreateFailed" and e[1] == "Warning" for e in events(cluster))


def test_build_job_keeps_an_explicit_restart_policy_and_leaves_the_scaled_job_alone() -> None:
    body = scaled_job("k")
    body["metadata"].pop("uid")
    assert build_job(body)["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert "restartPolicy" not in body["spec"]["jobTargetRef"]["template"]["spec"]
    assert "generateName" not in body["spec"]["jobTargetRef"]["template"]["metadata"]
    body["spec"]["jobTargetRef"]["template"]["spec"]["restartPolicy"] = "Never"
    job = build_job(body)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "ownerReferences" not in job["metadata"]


@pytest.mark.parametrize(
    ("pods", "wanted", "pending"),
    [
        ([], [], True),
        ([{"status": {"phase": "Pending"}}], [], True),
        ([{"status": {"phase": "Running"}}], [], False),
        ([{"status": {"phase": "Succeeded"}}], [], False),
        ([{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}], ["Ready"], False),
        ([{"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}], ["Ready"], True),
        # KEDA counts matches over all pods: two pods both Ready is 2 matches for 1 wanted condition.
        ([{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}] * 2, ["Ready"], True),
    ],
)
def test_is_pending(pods: list[dict[str, Any]], wanted: list[str], pending: bool) -> None:
    assert is_pending(pods, wanted) is pending


def test_history_to_delete_keeps_the_newest() -> None:
    def job(name: str, kind: str, at: str) -> dict[str, Any]:
        cond = {"type": kind, "status": "True", "lastTransitionTime": at}
        status = {"conditions": [cond], **({"completionTime": at} if kind == "Complete" else {})}
        return {"metadata": {"name": name}, "status": status}

    found = history_to_delete(
        [job("c2", "Complete", "2024-01-02T00:00:00Z"), job("c1", "Complete", "2024-01-01T00:00:00Z")], 1, 0
    )
    assert [j["metadata"]["name"] for j in found] == ["c1"]
    assert history_to_delete([job("f1", "Failed", "2024-01-01T00:00:00Z")], 5, 0)[0]["metadata"]["name"] == "f1"


async def test_started_loop_polls_in_the_background_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledJobController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b")
    controller.autostart = True
    await controller.reconcile(put(cluster, scaled_job(key)))
    for _ in range(200):  # the first poll runs at once; wait for it without assuming how long it takes
        if len(jobs(cluster)) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(jobs(cluster)) == 2
    await controller.delete(cluster.objects[SJ_RES, NS, "batch"].raw)
    assert (NS, "batch") not in controller.runtimes


async def test_scaled_jobs_feed_prometheus_and_triggers_activity_against_fake_apiserver(
    cluster: km.KubernetesEmulator, redis_list: tuple[aioredis.Redis, str], tmp_path: Path
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b")
    services = Services(tmp_path, metrics_port=0, history=False, memory_history=False)
    services.metrics = MetricsObserver()  # the registry /metrics would serve, without opening a port here
    api = client_for_url(str(cluster.url))
    ctl = ScaledJobController(api, OperatorOptions(services=services), clock=lambda: T0)
    ctl.autostart = False
    labels = {
        "namespace": NS,
        "scaledObject": "batch",
        "metric": f"s0-redis-{key}",
        "scaler": "redisScaler",
        "triggerIndex": "0",
        "type": "scaledjob",
    }
    try:
        await ctl.reconcile(put(cluster, scaled_job(key)))
        await ctl.poll_once((NS, "batch"))
        registry = services.metrics.registry
        assert registry.get_sample_value("keda_scaler_metrics_value", labels) == 2
        assert registry.get_sample_value("keda_scaler_active", labels) == 1
        status = cluster.objects[SJ_RES, NS, "batch"].raw["status"]
        assert status["triggersActivity"] == {f"s0-redis-{key}": {"isActive": True}}

        await client.delete(key)
        await ctl.poll_once((NS, "batch"))
        assert registry.get_sample_value("keda_scaler_active", labels) == 0
        status = cluster.objects[SJ_RES, NS, "batch"].raw["status"]
        assert status["triggersActivity"] == {f"s0-redis-{key}": {"isActive": False}}

        await ctl.delete(cluster.objects[SJ_RES, NS, "batch"].raw)
        assert registry.get_sample_value("keda_scaler_metrics_value", labels) is None  # its series went with it
    finally:
        await ctl.close()
        await api.aclose()
        await services.stop()
