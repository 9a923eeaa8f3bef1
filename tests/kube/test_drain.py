"""Busy-aware scale-in on Kubernetes: pod-deletion-cost from busy probes, held scale-ins, HPA-mode prediction.

The API server is kmock, a fake (no ReplicaSet controller, no HPA: `_replicaset.py` models the ReplicaSet's
choice and the tests play it). The pods' busy endpoints are real HTTP servers on 127.x.13.n loopback addresses
standing in for pod IPs; the trigger is a real Redis list.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock as km
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from ebb.errors import SpecError
from ebb.kube.client import POD, client_for_url
from ebb.kube.drain import parse_selector, predict_hpa_replicas, selector_text
from ebb.kube.operator import OperatorOptions, ScaledObjectController
from ebb.scalers.base import MetricSpec
from ebb.spec.drain import DRAINING_POD_ANNOTATION as DRAINING
from ebb.spec.drain import PodBusyProbe, busy_probe

from ._replicaset import COST, pods_to_delete

NS = "ns"
SO_RES = km.resource("keda.sh/v1alpha1/scaledobjects")
DEPLOY_RES = km.resource("apps/v1/deployments")
HPA_RES = km.resource("autoscaling/v2/horizontalpodautoscalers")
EVENT_RES = km.resource("v1/events")
POD_RES = km.resource("v1/pods")
T0 = 1_700_000_000.0
FAST_DOWN = {"scaleDown": {"stabilizationWindowSeconds": 0}}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class PodEndpoints:
    """One busy endpoint per pod IP; `status[ip]` is what it answers (200 busy, 204 idle, 500 garbage)."""

    def __init__(self) -> None:
        self.subnet = f"127.{random.randint(100, 250)}.13"
        self.port = 0
        self.status: dict[str, int] = {}
        #: A JSON body to answer with (the status then 200), by IP.
        self.body: dict[str, str] = {}
        self.runners: list[web.AppRunner] = []

    async def start(self, count: int) -> None:
        probe = socket.socket()
        probe.bind((f"{self.subnet}.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        for n in range(count):
            ip = f"{self.subnet}.{n + 2}"
            self.status[ip] = 204

            async def answer(request: web.Request, ip: str = ip) -> web.Response:
                if ip in self.body:
                    return web.Response(status=200, text=self.body[ip], content_type="application/json")
                return web.Response(status=self.status[ip])

            app = web.Application()
            app.router.add_get("/busy", answer)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, ip, self.port).start()
            self.runners.append(runner)

    def ip(self, n: int) -> str:
        return f"{self.subnet}.{n + 2}"

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def endpoints() -> AsyncIterator[PodEndpoints]:
    found = PodEndpoints()
    await found.start(4)
    yield found
    await found.stop()


@pytest.fixture
async def redis_list() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    key = f"ebb-drain-{uuid.uuid4().hex}"
    yield client, key
    await client.delete(key)
    await client.aclose()


ORDER: dict[str, int] = {}


def pod(name: str, ip: str | None, app: str = "web") -> dict[str, Any]:
    ORDER[name] = len(ORDER)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}, "annotations": {}},
        "status": {"phase": "Running", **({"podIP": ip} if ip else {})},
    }


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator, endpoints: PodEndpoints) -> Iterator[km.KubernetesEmulator]:
    for res in (SO_RES, DEPLOY_RES, HPA_RES, EVENT_RES, POD_RES, km.resource("v1/secrets")):
        kmock.resources[res] = {}
    kmock.resources[km.resource("apiextensions.k8s.io/v1/customresourcedefinitions")] = {}
    kmock.objects[DEPLOY_RES, NS, "web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {"containers": [{"name": "app", "env": [{"name": "REDIS_HOST", "value": "127.0.0.1"}]}]}
            },
        },
        "status": {"replicas": 4},
    }
    for n in range(4):
        kmock.objects[POD_RES, NS, f"web-{n}"] = pod(f"web-{n}", endpoints.ip(n))
    # Another workload's pod, busy endpoint and all: never probed, never marked.
    kmock.objects[POD_RES, NS, "other-0"] = pod("other-0", endpoints.ip(0), app="other")
    yield kmock


@pytest.fixture
async def controller(cluster: km.KubernetesEmulator) -> AsyncIterator[ScaledObjectController]:
    client = client_for_url(str(cluster.url))
    ctl = ScaledObjectController(client, OperatorOptions(), clock=Clock())
    ctl.autostart = False
    yield ctl
    await ctl.close()
    await client.aclose()


def scaled_object(key: str, port: int, *, mode: str = "direct", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": "worker",
            "namespace": NS,
            "uid": "uid-1",
            "annotations": {"ebb.dev/scaling": mode, "ebb.dev/busy-probe": f"http://:{port}/busy", **annotations},
        },
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "pollingInterval": 5,
            "cooldownPeriod": 0,
            "minReplicaCount": 1,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": FAST_DOWN}},
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {"hostFromEnv": "REDIS_HOST", "port": "6379", "listName": key, "listLength": "5"},
                }
            ],
        },
    }


def put(cluster: km.KubernetesEmulator, body: dict[str, Any]) -> dict[str, Any]:
    cluster.objects[SO_RES, NS, body["metadata"]["name"]] = body
    return body


def obj(cluster: km.KubernetesEmulator, res: km.resource, name: str) -> dict[str, Any]:
    return dict(cluster.objects[res, NS, name].raw)


def live_pods(cluster: km.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return {
        key[2]: dict(o.raw)
        for key, o in cluster.objects.items()
        if key[0] == POD_RES and not o.deleted and o.raw["metadata"]["labels"]["app"] == "web"
    }


def costs(cluster: km.KubernetesEmulator) -> dict[str, str | None]:
    return {name: (p["metadata"].get("annotations") or {}).get(COST) for name, p in live_pods(cluster).items()}


def events(cluster: km.KubernetesEmulator) -> list[tuple[str, str, str]]:
    return [
        (o.raw["reason"], o.raw["type"], o.raw["message"])
        for (res, _, _), o in cluster.objects.items()
        if res == EVENT_RES
    ]


async def replicaset(cluster: km.KubernetesEmulator, controller: ScaledObjectController) -> list[str]:
    """Play the ReplicaSet controller: delete pods down to the Deployment's spec.replicas, by its ranking."""
    want = obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"]
    pods = list(live_pods(cluster).values())
    gone = pods_to_delete(pods, len(pods) - want, ORDER)
    for p in gone:
        await controller.client.delete(POD, p["metadata"]["name"], namespace=NS)
    return sorted(p["metadata"]["name"] for p in gone)


async def settle(controller: ScaledObjectController) -> None:
    """Wait for what the poll left in the background (status, Events, deletion-cost checks)."""
    import asyncio

    runtime = controller.runtimes[(NS, "worker")]
    await asyncio.gather(*runtime.writes)
    await controller._observers[(NS, "worker")].drain()


async def test_direct_scale_in_removes_idle_pods_first_and_waits_for_busy_ones_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b", "c")  # 3 items / 5 per replica: the core wants 1 of the 4
    endpoints.status[endpoints.ip(0)] = 200
    endpoints.status[endpoints.ip(1)] = 200
    await controller.reconcile(put(cluster, scaled_object(key, endpoints.port)))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    # Two idle pods: only those two go now; the busy ones cost more.
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 2
    assert costs(cluster) == {"web-0": "100", "web-1": "100", "web-2": "-100", "web-3": "-100"}
    assert (
        "annotations" not in obj(cluster, POD_RES, "other-0")["metadata"]
        or not obj(cluster, POD_RES, "other-0")["metadata"]["annotations"]
    )
    assert ("WaitingForBusyPods", "Normal") in [(r, t) for r, t, _ in events(cluster)]
    assert any(
        "scaling 4→1: 2 idle pods marked for removal, waiting for 1 of 2 busy pods" in m for *_, m in events(cluster)
    )
    # Without the costs the ReplicaSet would have removed the newest pods, web-3 and web-2 ... and with them.
    assert await replicaset(cluster, controller) == ["web-2", "web-3"]

    endpoints.status[endpoints.ip(1)] = 204  # web-1 finished its job
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 1
    assert costs(cluster) == {"web-0": "100", "web-1": "-100"}
    assert any("scaling 2→1: 1 idle pods marked for removal" in m for *_, m in events(cluster))
    assert await replicaset(cluster, controller) == ["web-1"]

    # No scale-in pending any more: the costs ebb set are cleared.
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert costs(cluster) == {"web-0": None}
    assert "ebb.dev/deletion-cost" not in (obj(cluster, POD_RES, "web-0")["metadata"].get("annotations") or {})


async def test_direct_scale_in_of_busy_pods_after_max_drain_seconds_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, "a")
    for n in range(4):
        endpoints.status[endpoints.ip(n)] = 200
    body = scaled_object(key, endpoints.port, **{"ebb.dev/max-drain-seconds": "30"})
    await controller.reconcile(put(cluster, body))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4  # all busy: nothing goes yet
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 29
    await runtime.loop.poll_once()
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4
    controller.clock.now += 1
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 1
    [warning] = [m for r, t, m in events(cluster) if r == "BusyPodsRemoved"]
    assert "waited 30 s (ebb.dev/max-drain-seconds 30)" in warning and "3 busy pods marked for removal" in warning


async def test_a_probe_that_fails_or_answers_garbage_counts_as_busy_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, "a")
    endpoints.status[endpoints.ip(2)] = 500  # garbage
    cluster.objects[POD_RES, NS, "web-3"] = pod("web-3", f"{endpoints.subnet}.250")  # nothing listens there
    await controller.reconcile(put(cluster, scaled_object(key, endpoints.port)))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    assert costs(cluster) == {"web-0": "-100", "web-1": "-100", "web-2": "200", "web-3": "200"}
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 2
    [waiting] = [m for r, _, m in events(cluster) if r == "WaitingForBusyPods"]
    assert "2 did not answer the busy probe (counted as busy; web-2: answered HTTP 500" in waiting


async def test_hpa_mode_marks_pods_for_the_predicted_scale_in_and_clears_after_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, *"abcdefgh")  # 8 / 5 per replica: the HPA will want 2 of the 4
    endpoints.status[endpoints.ip(0)] = 200
    await controller.reconcile(put(cluster, scaled_object(key, endpoints.port, mode="hpa")))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4  # the HPA's to change, not ebb's
    assert costs(cluster) == {"web-0": "100", "web-1": "-100", "web-2": "-100", "web-3": "-100"}
    assert any("HPA expected to scale 4→2: 2 idle pods marked for removal" in m for *_, m in events(cluster))

    # The queue grows again: no scale-in is coming, the costs go.
    await client.rpush(key, *"ijklmnopqrstu")
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert costs(cluster) == {"web-0": None, "web-1": None, "web-2": None, "web-3": None}


async def test_hpa_mode_warns_when_busy_pods_are_at_risk_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, "a")
    for n in range(3):
        endpoints.status[endpoints.ip(n)] = 200
    await controller.reconcile(put(cluster, scaled_object(key, endpoints.port, mode="hpa")))
    await controller.runtimes[(NS, "worker")].loop.poll_once()
    await settle(controller)
    [warning] = [m for r, t, m in events(cluster) if r == "BusyPodsAtRisk" and t == "Warning"]
    assert "HPA expected to scale 4→1: only 1 idle pods; 2 busy pods may be removed" in warning


async def test_cooldown_from_last_activity_keeps_busy_pods_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    _, key = redis_list  # an empty queue: no trigger is active
    endpoints.status[endpoints.ip(3)] = 200
    body = scaled_object(key, endpoints.port, **{"ebb.dev/cooldown-from": "last-activity"})
    body["spec"].update(minReplicaCount=0, cooldownPeriod=60)
    await controller.reconcile(put(cluster, body))
    runtime = controller.runtimes[(NS, "worker")]
    runtime.loop.decider.state.last_active_time = T0 - 100  # KEDA's rule alone would scale to zero now
    await runtime.loop.poll_once()
    await settle(controller)
    # Not deactivated (a busy pod is work seen); the 1..N part shrinks to 1, keeping the busy pod.
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 1
    assert await replicaset(cluster, controller) == ["web-0", "web-1", "web-2"]
    endpoints.status[endpoints.ip(3)] = 204
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 61
    await runtime.loop.poll_once()
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 0


async def test_a_bad_busy_probe_annotation_is_reported_naming_it_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController, redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    body = scaled_object(key, 80)
    body["metadata"]["annotations"]["ebb.dev/busy-probe"] = "http://pods:8080/busy"
    await controller.reconcile(put(cluster, body))
    ready = {c["type"]: c for c in obj(cluster, SO_RES, "worker")["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False"
    assert 'metadata.annotations["ebb.dev/busy-probe"]' in ready["message"]
    assert "leave the host out" in ready["message"]
    assert (NS, "worker") not in controller.runtimes


# --- the pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        ({"ebb.dev/busy-probe": "http://:8080/busy"}, PodBusyProbe("http", 8080, "/busy")),
        ({"ebb.dev/busy-probe": "https://:9443"}, PodBusyProbe("https", 9443, "/")),
        (
            {"ebb.dev/busy-probe": "http://:8080/state?who=ebb", "ebb.dev/max-drain-seconds": "90.5"},
            PodBusyProbe("http", 8080, "/state?who=ebb", 90.5),
        ),
        (
            {"ebb.dev/busy-probe": "http://:8080/busy", "ebb.dev/drain-handshake": "True"},
            PodBusyProbe("http", 8080, "/busy", handshake=True),
        ),
    ],
)
def test_busy_probe_annotation(annotations: dict[str, str], expected: PodBusyProbe | None) -> None:
    assert busy_probe(annotations, "ScaledObject ns/w") == expected


@pytest.mark.parametrize(
    ("annotations", "key", "words"),
    [
        ({"ebb.dev/busy-probe": "tcp://:8080"}, "ebb.dev/busy-probe", "scheme must be http or https"),
        ({"ebb.dev/busy-probe": "http://10.0.0.1:8080/busy"}, "ebb.dev/busy-probe", "leave the host out"),
        ({"ebb.dev/busy-probe": "http:///busy"}, "ebb.dev/busy-probe", "no port"),
        ({"ebb.dev/busy-probe": "http://:99999/busy"}, "ebb.dev/busy-probe", "like http://:8080/busy"),
        (
            {"ebb.dev/busy-probe": "http://:80/", "ebb.dev/max-drain-seconds": "-1"},
            "ebb.dev/max-drain-seconds",
            "0 or more",
        ),
        (
            {"ebb.dev/busy-probe": "http://:80/", "ebb.dev/max-drain-seconds": "soon"},
            "ebb.dev/max-drain-seconds",
            "'soon'",
        ),
        ({"ebb.dev/max-drain-seconds": "60"}, "ebb.dev/max-drain-seconds", "add it too"),
        ({"ebb.dev/drain-handshake": "true"}, "ebb.dev/drain-handshake", "add it too"),
        (
            {"ebb.dev/busy-probe": "http://:80/", "ebb.dev/drain-handshake": "yes"},
            "ebb.dev/drain-handshake",
            "'yes'",
        ),
    ],
)
def test_busy_probe_annotation_errors_name_the_annotation(annotations: dict[str, str], key: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        busy_probe(annotations, "ScaledObject ns/w")
    assert err.value.field == f"metadata.annotations[{key}]"
    assert words in err.value.message


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("app=web", {"app": "web", "x": "y"}, True),
        ("app=web", {"app": "api"}, False),
        ("app==web,tier!=db", {"app": "web", "tier": "front"}, True),
        ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
        ("tier in (a, b),canary", {"tier": "b", "canary": ""}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier notin (a),!canary", {"tier": "c"}, True),
        ("!canary", {"canary": "1"}, False),
    ],
)
def test_label_selector(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(text).matches(labels) is matches


def test_label_selector_from_a_workload_spec_round_trips() -> None:
    spec = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
    assert selector_text(spec) == "app=web,tier in (a)"
    assert parse_selector(selector_text(spec)).matches({"app": "web", "tier": "a"})
    with pytest.raises(ValueError, match="cannot read"):
        parse_selector("app=web,(oops")


@pytest.mark.parametrize(
    ("values", "current", "expected"),
    [
        ({"q": 8.0}, 4, 2),  # ceil(8 / 5)
        ({"q": 23.0}, 4, 5),  # ceil(23 / 5); 21 would be within the tolerance
        ({"q": 0.0}, 4, 1),  # never below max(1, minReplicaCount): 0 is KEDA's deactivation, not the HPA's
        ({"q": 19.5}, 4, 4),  # within the 10 % tolerance: no change
        ({}, 4, None),  # no value served: ebb cannot tell
    ],
)
def test_hpa_prediction_uses_the_same_core(values: dict[str, float], current: int, expected: int | None) -> None:
    specs = [MetricSpec("q", 5.0, "AverageValue")]
    assert predict_hpa_replicas(specs, values, current, 0, 10, T0) == expected


def asked(cluster: km.KubernetesEmulator) -> list[str]:
    return sorted(n for n, p in live_pods(cluster).items() if (p["metadata"].get("annotations") or {}).get(DRAINING))


async def test_drain_handshake_removes_only_pods_that_confirmed_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, "a", "b", "c")  # the core wants 1 of the 4
    ips = {f"web-{n}": endpoints.ip(n) for n in range(4)}
    for name in ("web-0", "web-1"):
        endpoints.body[ips[name]] = '{"inFlight": 1}'
    for name in ("web-2", "web-3"):
        endpoints.body[ips[name]] = '{"inFlight": 0}'
    body = scaled_object(key, endpoints.port, **{"ebb.dev/drain-handshake": "true"})
    await controller.reconcile(put(cluster, body))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    # Idle is not enough: nothing goes before a pod confirms it stopped taking work.
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4
    chosen = asked(cluster)
    assert len(chosen) == 3 and {"web-2", "web-3"} <= set(chosen)
    [busy_one] = set(chosen) - {"web-2", "web-3"}
    assert any("waiting for 3 asked to drain (1 busy" in m for *_, m in events(cluster))
    # Asked but not confirmed: below every pod not asked, so a ReplicaSet that scales in early (the HPA) takes
    # ebb's choice, never the busy pod that keeps taking work.
    [kept] = {"web-0", "web-1"} - {busy_one}
    assert {costs(cluster)[name] for name in chosen} == {"-150"}
    assert int(costs(cluster)[kept]) > -100  # busy, not asked

    # The idle pods read the annotation (Downward API) and confirm; a pod never asked says nothing of draining.
    for name in ("web-2", "web-3"):
        endpoints.body[ips[name]] = '{"inFlight": 0, "draining": true}'
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 2
    assert costs(cluster)["web-2"] == costs(cluster)["web-3"] == "-200"
    assert await replicaset(cluster, controller) == ["web-2", "web-3"]

    # The busy one finishes its job, takes no other, confirms: it goes, and the other busy pod stays.
    endpoints.body[ips[busy_one]] = '{"inFlight": 0, "draining": true}'
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 1
    assert await replicaset(cluster, controller) == [busy_one]

    # Done: nothing is left asked to drain, no cost ebb set remains.
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert asked(cluster) == []
    assert set(costs(cluster).values()) == {None}


async def test_drain_handshake_asks_again_no_longer_when_the_scale_in_is_called_off_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, *"abcdefghijklmn")  # 14 / 5: the core wants 3 of the 4
    for n in range(4):
        endpoints.body[endpoints.ip(n)] = '{"inFlight": 1}'
    body = scaled_object(key, endpoints.port, **{"ebb.dev/drain-handshake": "true"})
    await controller.reconcile(put(cluster, body))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    assert len(asked(cluster)) == 1
    await client.rpush(key, *"opqrstuvw")  # more work: no scale-in, the pod takes work again
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert asked(cluster) == []


def test_drain_handshake_chooses_a_statefulsets_highest_ordinals() -> None:
    from ebb.kube.drain import PodDrainer, PodState
    from ebb.targets.busy import BusyState

    async def no_selector() -> str:
        return ""

    probe = PodBusyProbe("http", 8080, "/busy", handshake=True)
    idle, drained = BusyState("idle"), BusyState("idle", draining=True)
    states = [
        PodState("db-0", idle),
        PodState("db-1", BusyState("busy")),
        PodState("db-2", drained, asked=True),
        PodState("db-10", BusyState("busy"), asked=True),
    ]
    sts = PodDrainer(None, NS, "StatefulSet ns/db", probe, no_selector, statefulset=True)  # type: ignore[arg-type]
    chosen = sts._choose(states, 2)
    assert [s.name for s in chosen] == ["db-10", "db-2"]
    assert sts._ready(chosen) == 0  # db-10 is busy: db-2 cannot go before it
    rs = PodDrainer(None, NS, "Deployment ns/web", probe, no_selector)  # type: ignore[arg-type]
    chosen = rs._choose(states, 2)
    assert [s.name for s in chosen] == ["db-2", "db-10"]  # confirmed, then already asked
    assert rs._ready(chosen) == 1


@pytest.mark.parametrize(
    ("body", "kind", "draining"),
    [
        (b'{"inFlight": 0, "draining": true}', "idle", True),
        (b'{"inFlight": 1, "draining": true}', "busy", True),
        (b'{"busy": false}', "idle", False),
        (b'{"inFlight": 0, "draining": "yes"}', "unknown", False),
    ],
)
def test_a_draining_answer_is_read(body: bytes, kind: str, draining: bool) -> None:
    from ebb.targets.busy import interpret_http

    state = interpret_http(200, body)
    assert (state.kind, state.draining) == (kind, draining)


async def test_drain_handshake_in_hpa_mode_asks_early_and_warns_until_confirmed_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    client, key = redis_list
    await client.rpush(key, *"abcdefgh")  # 8 / 5 per replica: the HPA will want 2 of the 4
    for n in range(4):
        endpoints.body[endpoints.ip(n)] = '{"inFlight": 0}'
    body = scaled_object(key, endpoints.port, mode="hpa", **{"ebb.dev/drain-handshake": "true"})
    await controller.reconcile(put(cluster, body))
    runtime = controller.runtimes[(NS, "worker")]
    await runtime.loop.poll_once()
    await settle(controller)
    assert obj(cluster, DEPLOY_RES, "web")["spec"]["replicas"] == 4  # the HPA's to change, not ebb's
    chosen = asked(cluster)
    assert len(chosen) == 2
    [risk] = [m for r, t, m in events(cluster) if r == "BusyPodsAtRisk" and t == "Warning"]
    assert "HPA expected to scale 4→2: 0 of 2 pods confirmed drained" in risk

    for name in chosen:  # they read the annotation and confirm: the lowest cost, for the HPA's scale-in
        endpoints.body[endpoints.ip(int(name.split("-")[1]))] = '{"inFlight": 0, "draining": true}'
    assert isinstance(controller.clock, Clock)
    controller.clock.now += 5
    await runtime.loop.poll_once()
    await settle(controller)
    assert {n: c for n, c in costs(cluster).items() if c == "-200"} == dict.fromkeys(chosen, "-200")
    assert any("HPA expected to scale 4→2: 2 pods drained" in m for *_, m in events(cluster))


class TickingClock(Clock):
    """A clock that moves on a little at every reading, as time.time does between a poll's first and last."""

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


async def test_waiting_for_busy_pods_is_said_once_a_minute_not_at_every_poll_fake_apiserver(
    cluster: km.KubernetesEmulator,
    controller: ScaledObjectController,
    endpoints: PodEndpoints,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    """Regression (real cluster, v1.28.0): while busy pods were waited for, every poll (2 s) posted a new
    WaitingForBusyPods Event, each a new object as only "longest 2 s", "4 s" ... changed; the first said
    "longest -0 s" (the pods' busy time was stamped after the poll read the clock)."""
    client, key = redis_list
    await client.rpush(key, "a")  # the core wants 1 of the 4
    endpoints.status[endpoints.ip(0)] = 200
    endpoints.status[endpoints.ip(1)] = 200
    controller.clock = TickingClock()
    await controller.reconcile(put(cluster, scaled_object(key, endpoints.port)))
    runtime = controller.runtimes[(NS, "worker")]

    def waiting() -> list[str]:
        return [m for r, _, m in events(cluster) if r == "WaitingForBusyPods"]

    for _ in range(20):  # 40 s of polls every 2 s
        await runtime.loop.poll_once()
        await settle(controller)
        controller.clock.now += 2
    # 4→1 with two idle pods marked (kmock deletes no pod), then 2→1 still waiting: each said once, not 20 times.
    assert waiting() == [
        "scaling 4→1: 2 idle pods marked for removal, waiting for 1 of 2 busy pods (longest 0 s)",
        "scaling 2→1: 2 idle pods marked for removal, waiting for 1 of 2 busy pods (longest 2 s)",
    ]
    for _ in range(15):  # past a minute in the same state: said again, with the wait brought up to date
        await runtime.loop.poll_once()
        await settle(controller)
        controller.clock.now += 2
    assert len(waiting()) == 3, waiting()
    again = "scaling 2→1: 2 idle pods marked for removal, waiting for 1 of 2 busy pods (longest 6"
    assert waiting()[-1].startswith(again), waiting()
