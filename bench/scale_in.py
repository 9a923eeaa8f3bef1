"""`python -m bench.scale_in`: scale-in without killing busy workers, KEDA's way and busy-aware, side by side.

Workers take jobs from a real Redis list on :6379 (the reliable-queue pattern: BLMOVE into a processing list). Job
lengths are 5 to 120 s, log-uniform from a seeded generator; arrivals rise then fall (a triangular profile). Every
duration is time-compressed by SCALE (0.05: a 120 s job takes 6 s, a 30 s grace period 1.5 s), so one run takes
about a minute. The ScaledObject: redis trigger, listLength 2, min 0, max 20, pollingInterval 1 s, cooldownPeriod
3 s (60 s uncompressed), scaleDown stabilization 2 s (40 s),
Kubernetes' default scale-up policies with their 15 s period compressed to 1 s; the same in every run.

Five runs per round, in one process, one after the other, with the same jobs:
- local (a) KEDA's behaviour: a ProcessGroup of real worker processes, scale-in stops the highest indexes (SIGTERM,
  grace period, SIGKILL), busy or not;
- local (b) busy-aware: the same with busyProbe (a file the worker holds while it works);
- kubernetes (a) and (b): the operator's direct mode against kmock, a fake API server. Pods are records in it;
  each pod's worker is an asyncio task in this process with a busy endpoint on its own 127.x.y.z loopback address
  (its pod IP). No kubelet, scheduler or ReplicaSet controller runs: a model of the ReplicaSet controller here
  creates pods (ready at once) and deletes them as Kubernetes ranks them for a scale-down with every pod scheduled,
  running, ready, on its own node, without restarts: lower controller.kubernetes.io/pod-deletion-cost first, then
  the newest (tests/kube/_replicaset.py). A deleted pod's worker gets SIGTERM's treatment: it stops taking jobs and
  is killed after the grace period if its job has not finished. (b) adds ebb.dev/busy-probe and
  ebb.dev/drain-handshake; the pod's Downward API file follows its ebb.dev/draining annotation at the model's next
  pass, or (the slow kubelet variant, run too) up to KUBELET_SYNC later.

`--repeat N` runs N rounds of all of it. A KEDA livelock (a job interrupted LIVELOCK times and never done) ends a
run early and is reported as such.

A worker killed during a job leaves it in its processing list: the job counts as interrupted and goes back on the
queue (retried; its completion time runs from its first enqueue). Reported per run: jobs interrupted, job
completion time p50/p95 (enqueue to done, in uncompressed seconds), replica-seconds (the sum of worker lifetimes,
uncompressed) and (b)'s extra replica-seconds over (a).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench._common import RESULTS, percentile, write_result

SCALE = 0.05
JOB_MIN, JOB_MAX = 5.0, 120.0
JOBS = 140
LOAD_SECONDS = 600.0 * SCALE
GRACE = 30.0 * SCALE
POLLING = 1
COOLDOWN = 3
STABILIZATION = 2
MAX_REPLICAS = 20
LIST_LENGTH = 2
MAX_DRAIN = 600.0 * SCALE
#: The kubelet's periodic pod sync (its default syncFrequency, 1 min): how late a Downward API file can be.
KUBELET_SYNC = 60.0 * SCALE
#: Kubernetes' default scale-up policies (100 % or 4 pods per 15 s), their period compressed to 1 s.
SCALE_UP_POLICIES = [
    {"type": "Percent", "value": 100, "periodSeconds": 1},
    {"type": "Pods", "value": 4, "periodSeconds": 1},
]
DEADLINE = float(os.environ.get("BENCH_DEADLINE", "240"))
WORKER = [sys.executable, str(Path(__file__).with_name("_scale_in_worker.py"))]


def plan(seed: int) -> list[tuple[float, float]]:
    """(arrival offset, job length) in compressed seconds, by arrival."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(JOBS):
        length = math.exp(rng.uniform(math.log(JOB_MIN), math.log(JOB_MAX))) * SCALE
        jobs.append((rng.triangular(0.0, LOAD_SECONDS, LOAD_SECONDS / 2), length))
    return sorted(jobs)


@dataclass
class Books:
    """The run's Redis keys and what the sweeper counted."""

    prefix: str
    interrupted: int = 0
    gone: set[str] = field(default_factory=set)
    #: Interruptions by job id (a job may be interrupted more than once).
    by_job: dict[int, int] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return f"{self.prefix}queue"


#: A worker whose heartbeat (every 0.1 s) is this old, without having recorded its end, was killed. Generous on
#: purpose: a heartbeat late on a loaded machine must not make a live worker's job count as interrupted.
DEAD_AFTER = 2.0


async def sweep(r: aioredis.Redis, books: Books) -> None:
    """Jobs left in the processing list of a worker that stopped: interrupted, put back on the queue.

    A worker is gone once it recorded its end (then its processing list should be empty: a job left there is
    interrupted all the same) or once its heartbeat is DEAD_AFTER old (SIGKILL leaves no end record)."""
    while True:
        now = time.time()
        beats = await r.hgetall(f"{books.prefix}hb")
        ends = await r.hgetall(f"{books.prefix}end")
        for raw_worker, raw_time in beats.items():
            worker = raw_worker.decode()
            if worker in books.gone or (raw_worker not in ends and now - float(raw_time) < DEAD_AFTER):
                continue
            books.gone.add(worker)
            processing = f"{books.prefix}proc:{worker}"
            while (raw := await r.lmove(processing, books.queue, "RIGHT", "RIGHT")) is not None:
                books.interrupted += 1
                job = int(json.loads(raw)["id"])
                books.by_job[job] = books.by_job.get(job, 0) + 1
        await asyncio.sleep(0.1)


#: A job interrupted this many times and still not done is caught in a livelock (KEDA's own, in (a): the last
#: job outlives cooldownPeriod + the grace period, the replica goes to 0 and is killed, the job is put back, a
#: replica comes for it, and so on). The run stops there rather than at its deadline.
LIVELOCK = 3


async def results(r: aioredis.Redis, books: Books, jobs: int) -> dict[str, Any]:
    done = {int(k): float(v) for k, v in (await r.hgetall(f"{books.prefix}done")).items()}
    enqueued = {int(k): float(v) for k, v in (await r.hgetall(f"{books.prefix}enq")).items()}
    starts = {k.decode(): float(v) for k, v in (await r.hgetall(f"{books.prefix}start")).items()}
    beats = {k.decode(): float(v) for k, v in (await r.hgetall(f"{books.prefix}hb")).items()}
    ends = {k.decode(): float(v) for k, v in (await r.hgetall(f"{books.prefix}end")).items()}
    lifetimes = [max(ends.get(w, 0.0), beats.get(w, start)) - start for w, start in starts.items()]
    completion = [(done[n] - enqueued[n]) / SCALE for n in done if n in enqueued]
    livelocked = sorted(n for n, times in books.by_job.items() if times >= LIVELOCK and n not in done)
    return {
        "jobs": jobs,
        "jobs_done": len(done),
        "jobs_interrupted": len(books.by_job),
        "interruptions": books.interrupted,
        "livelock": {"jobs": livelocked, "interruptions": sum(books.by_job[n] for n in livelocked)}
        if livelocked
        else None,
        "completion_p50_s": round(percentile(completion, 50), 1),
        "completion_p95_s": round(percentile(completion, 95), 1),
        "replica_seconds": round(sum(lifetimes) / SCALE, 0),
        "workers_started": len(starts),
    }


async def run_once(
    name: str,
    start: Callable[[Books], Awaitable[tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]]],
    jobs: list[tuple[float, float]],
) -> dict[str, Any]:
    """One run: start the scaler and target (`start` gives back how many workers run, and how to stop), feed the
    jobs, wait until every job is done and every worker gone."""
    r = aioredis.Redis(host="127.0.0.1", port=6379)
    books = Books(f"ebb-bench-scalein-{uuid.uuid4().hex[:8]}:")
    running, stop = await start(books)
    sweeper = asyncio.create_task(sweep(r, books))
    t0 = time.monotonic()

    async def produce_recorded() -> None:
        # Each job's first enqueue time, kept apart from the job (a retried job keeps it).
        for n, (at, length) in enumerate(jobs):
            delay = t0 + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            await r.hset(f"{books.prefix}enq", str(n), now)
            await r.lpush(books.queue, json.dumps({"id": n, "length": length}))

    producer = asyncio.create_task(produce_recorded())
    try:
        while time.monotonic() - t0 < DEADLINE:
            await asyncio.sleep(0.25)
            if not producer.done():
                continue
            done = {int(k) for k in await r.hkeys(f"{books.prefix}done")}
            if len(done) >= len(jobs) and await running() == 0:
                break
            left = set(range(len(jobs))) - done
            if left and all(books.by_job.get(n, 0) >= LIVELOCK for n in left):
                print(f"scale_in {name}: livelock on job(s) {sorted(left)}: stopped", file=sys.stderr)
                break
        else:
            print(f"scale_in {name}: not finished within {DEADLINE:.0f} s", file=sys.stderr)
        await asyncio.sleep(0.8)  # the last heartbeats and the sweeper's last look
    finally:
        producer.cancel()
        await stop()
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
    out = await results(r, books, len(jobs))
    out["seconds"] = round(time.monotonic() - t0, 1)
    keys = [k async for k in r.scan_iter(f"{books.prefix}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()
    return out


# --- local: ebb run's loop over a ProcessGroup of real processes --------------------------------------------


def local_starter(busy_aware: bool) -> Callable[[Books], Awaitable[tuple[Any, Any]]]:
    async def start(books: Books) -> tuple[Any, Any]:
        from ebb.runtime.observer import ObjectRef, Observer
        from ebb.runtime.scaled_object import ScaledObjectLoop
        from ebb.scalers import build_scaler
        from ebb.scalers.base import TriggerContext
        from ebb.scaling.lifecycle import ScaledObjectDecider
        from ebb.scaling.types import Behavior, ObjectPolicy, ScalingPolicy, ScalingRules
        from ebb.spec.models import BusyProbe
        from ebb.targets.process import ProcessGroupTarget

        folder = Path(tempfile.mkdtemp(prefix="ebb-scale-in-"))
        env = {"BENCH_PREFIX": books.prefix}
        probe = None
        if busy_aware:
            env["BUSY_FILE"] = str(folder / "busy-{index}")
            probe = BusyProbe.model_validate({"file": str(folder / "busy-{index}"), "periodSeconds": 0.1})
        target = ProcessGroupTarget(
            "bench-scale-in",
            WORKER,
            env=env,
            termination_grace_period=GRACE,
            output=lambda name, line: None,
            busy_probe=probe,
            max_drain_seconds=MAX_DRAIN,
        )
        scaler = build_scaler(
            "redis",
            {"address": "127.0.0.1:6379", "listName": books.queue, "listLength": str(LIST_LENGTH)},
            ctx=TriggerContext(name="bench-scale-in", trigger_type="redis"),
        )
        policy = ObjectPolicy(
            min_replicas=0,
            max_replicas=MAX_REPLICAS,
            polling_interval=POLLING,
            cooldown_period=COOLDOWN,
            behavior=Behavior(
                scale_up=ScalingRules(policies=(ScalingPolicy("Percent", 100, 1), ScalingPolicy("Pods", 4, 1))),
                scale_down=ScalingRules(stabilization_window_seconds=STABILIZATION),
            ),
        )
        decider = ScaledObjectDecider(policy, mode="direct", obj="ScaledObject bench/scale-in")
        loop = ScaledObjectLoop(
            ObjectRef("ScaledObject", "bench", "scale-in"),
            [scaler],
            target,
            decider,
            polling_interval=POLLING,
            observer=Observer(),
        )
        task = asyncio.create_task(loop.run())

        async def running() -> int:
            return len(target.pids())

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await target.close()
            await scaler.close()

        return running, stop

    return start


# --- Kubernetes: the operator's direct mode against a fake API server ------------------------------------


class PodWorker:
    """One simulated pod: a queue worker (asyncio) with a busy endpoint at its pod IP.

    It is never cancelled while idle in its blocking pop: cancelling an awaited BLMOVE can drop a reply the server
    already acted on (redis/redis-py#2028), leaving a job in the processing list that nobody works on, which would
    count as interrupted. Stopping sets a flag; the pop times out within 0.2 s; a job that came in after it goes
    back to the queue untouched. Only SIGKILL (the grace period over) cancels a task, holding a job or not.

    `draining` is what its Downward API file says of `ebb.dev/draining`: while set it takes no new job, and its
    busy endpoint says `{"inFlight": 0|1, "draining": true|false}`.
    """

    def __init__(self, name: str, ip: str, port: int, books: Books) -> None:
        self.name, self.ip, self.port, self.books = name, ip, port, books
        self.holding = False
        self.holding_since = 0.0
        self.idle_answered = 0.0
        self.stopping = False
        self.draining = False
        #: The annotation's value not yet in the file, and when the kubelet writes it there.
        self.pending: tuple[bool, float] | None = None
        self.task: asyncio.Task[None] | None = None
        self.runner: Any = None
        #: The heartbeat goes on while this is set. A flag, not only cancel(): a cancellation landing inside a
        #: redis-py command can be swallowed (redis/redis-py#2028), and a heartbeat that outlives its killed worker
        #: hides the job it held from the sweeper for ever (a stalled run).
        self.beating = True

    async def start(self) -> None:
        from aiohttp import web

        async def busy(request: web.Request) -> web.Response:
            if not self.holding:
                self.idle_answered = time.monotonic()
            return web.json_response({"inFlight": int(self.holding), "draining": self.draining})

        app = web.Application()
        app.router.add_get("/busy", busy)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.ip, self.port).start()
        self.task = asyncio.create_task(self.work())

    async def work(self) -> None:
        r = aioredis.Redis(host="127.0.0.1", port=6379)
        prefix = self.books.prefix
        worker = f"pod-{self.name}"
        processing = f"{prefix}proc:{worker}"
        await r.hset(f"{prefix}start", worker, time.time())
        beat = asyncio.create_task(self._beat(worker))
        try:
            while not self.stopping:
                if self.draining:
                    await asyncio.sleep(0.05)
                    continue
                raw = await r.blmove(self.books.queue, processing, 0.2, "RIGHT", "LEFT")
                if raw is None:
                    continue
                if self.stopping:  # taken after the SIGTERM: not started, back to the queue's head
                    await r.lmove(processing, self.books.queue, "LEFT", "RIGHT")
                    break
                self.holding = True
                self.holding_since = time.monotonic()
                await asyncio.sleep(json.loads(raw)["length"])
                await r.hset(f"{prefix}done", json.loads(raw)["id"], time.time())
                await r.lrem(processing, 1, raw)
                self.holding = False
            await r.hset(f"{prefix}end", worker, time.time())
        finally:
            self.beating = False
            beat.cancel()
            with contextlib.suppress(BaseException):
                await r.aclose(close_connection_pool=True)

    async def _beat(self, worker: str) -> None:
        r = aioredis.Redis(host="127.0.0.1", port=6379)
        try:
            while self.beating:
                await r.hset(f"{self.books.prefix}hb", worker, time.time())
                await asyncio.sleep(0.1)
        finally:
            await r.aclose()

    def annotated(self, draining: bool, delay: Callable[[], float]) -> None:
        """The pod's ebb.dev/draining annotation as the API server has it; the file follows `delay()` s later."""
        now = time.monotonic()
        if draining == self.draining:
            self.pending = None
        elif self.pending is None or self.pending[0] != draining:
            self.pending = (draining, now + delay())
        if self.pending is not None and now >= self.pending[1]:
            self.draining, self.pending = draining, None

    async def terminate(self) -> None:
        """The pod is deleted: SIGTERM (an idle worker exits, a busy one finishes), killed after the grace period."""
        self.stopping = True
        assert self.task is not None
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), GRACE)
        if not self.task.done():
            self.task.cancel()  # SIGKILL: the job stays in the processing list
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.runner.cleanup()


def kube_starter(busy_aware: bool, slow_kubelet: bool = False) -> Callable[[Books], Awaitable[tuple[Any, Any]]]:
    """(a) or (b); (b) with the drain handshake. The kubelet writes a pod's Downward API file at the ReplicaSet
    model's next pass (every 20 ms), or with `slow_kubelet` at its next periodic sync of the pod: a delay drawn
    from 0 to KUBELET_SYNC for each change (seeded)."""
    sync_rng = random.Random(7)

    def kubelet_delay() -> float:
        return sync_rng.uniform(0.0, KUBELET_SYNC) if slow_kubelet else 0.0

    async def start(books: Books) -> tuple[Any, Any]:
        import kmock as km
        from tests.kube._replicaset import COST, pods_to_delete

        from ebb.kube.client import POD, client_for_url
        from ebb.kube.operator import OperatorOptions, ScaledObjectController

        ns = "bench"
        deploy_res = km.resource("apps/v1/deployments")
        server = km.KubernetesEmulator()
        await server.__aenter__()
        http_server = km.Server(server)
        await http_server.__aenter__()
        for res in (
            "keda.sh/v1alpha1/scaledobjects",
            "autoscaling/v2/horizontalpodautoscalers",
            "v1/events",
            "v1/pods",
            "v1/secrets",
            "v1/configmaps",
            "apiextensions.k8s.io/v1/customresourcedefinitions",
        ):
            server.resources[km.resource(res)] = {}
        server.resources[deploy_res] = {}
        server.objects[deploy_res, ns, "worker"] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": ns},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "worker"}},
                "template": {"spec": {"containers": [{"name": "w", "env": [{"name": "REDIS", "value": "127.0.0.1"}]}]}},
            },
            "status": {"replicas": 0},
        }
        client = client_for_url(str(server.url))
        rs_client = client_for_url(str(server.url))
        controller = ScaledObjectController(client, OperatorOptions(scaling="direct"))
        annotations = {"ebb.dev/scaling": "direct"}
        subnet = random.randint(100, 250)
        probe_socket = socket.socket()
        probe_socket.bind((f"127.{subnet}.14.1", 0))
        port = probe_socket.getsockname()[1]
        probe_socket.close()
        if busy_aware:
            annotations["ebb.dev/busy-probe"] = f"http://:{port}/busy"
            annotations["ebb.dev/max-drain-seconds"] = f"{MAX_DRAIN:g}"
            annotations["ebb.dev/drain-handshake"] = "true"
        body = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "worker", "namespace": ns, "uid": "uid-bench", "annotations": annotations},
            "spec": {
                "scaleTargetRef": {"name": "worker"},
                "pollingInterval": POLLING,
                "cooldownPeriod": COOLDOWN,
                "minReplicaCount": 0,
                "maxReplicaCount": MAX_REPLICAS,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleUp": {"policies": SCALE_UP_POLICIES},
                            "scaleDown": {"stabilizationWindowSeconds": STABILIZATION},
                        }
                    }
                },
                "triggers": [
                    {
                        "type": "redis",
                        "metadata": {
                            "hostFromEnv": "REDIS",
                            "port": "6379",
                            "listName": books.queue,
                            "listLength": str(LIST_LENGTH),
                        },
                    }
                ],
            },
        }
        server.objects[km.resource("keda.sh/v1alpha1/scaledobjects"), ns, "worker"] = body
        if not await controller.reconcile(body):
            raise RuntimeError("the ScaledObject did not reconcile")
        workers: dict[str, PodWorker] = {}
        order: dict[str, int] = {}
        stopping: set[asyncio.Task[None]] = set()
        counter = iter(range(2, 10_000))

        async def replicaset() -> None:
            while True:
                try:
                    await reconcile_pods()
                except Exception as exc:  # a model that stops would stall the run: say it, carry on
                    print(f"scale_in: ReplicaSet model: {exc!r}", file=sys.stderr)
                await asyncio.sleep(0.02)

        async def reconcile_pods() -> None:
            from lightkube.core.exceptions import ApiError

            want = int(server.objects[deploy_res, ns, "worker"].raw["spec"]["replicas"])
            pods = [p.to_dict() if hasattr(p, "to_dict") else p async for p in rs_client.list(POD, namespace=ns)]
            pods = [p for p in pods if p["metadata"]["name"] in workers and not workers[p["metadata"]["name"]].stopping]
            for p in pods:  # the kubelet: each pod's Downward API file follows its annotations
                draining = (p["metadata"].get("annotations") or {}).get("ebb.dev/draining") == "true"
                workers[p["metadata"]["name"]].annotated(draining, kubelet_delay)
            for p in list(pods):  # a worker that died on its own (a Redis error, say): the pod goes, another comes
                worker = workers[p["metadata"]["name"]]
                if worker.task is not None and worker.task.done():
                    if not worker.task.cancelled() and worker.task.exception() is not None:
                        print(f"scale_in: pod {worker.name}: {worker.task.exception()!r}", file=sys.stderr)
                    worker.stopping = True
                    pods.remove(p)
                    with contextlib.suppress(ApiError):
                        await rs_client.delete(POD, worker.name, namespace=ns)
            if want > len(pods):
                for _ in range(want - len(pods)):
                    n = next(counter)
                    name, ip = f"worker-{n}", f"127.{subnet}.{14 + n // 250}.{n % 250 + 1}"
                    order[name] = n
                    pod = {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "labels": {"app": "worker"}},
                        "status": {"phase": "Running", "podIP": ip},
                    }
                    worker = PodWorker(name, ip, port, books)
                    await worker.start()
                    workers[name] = worker
                    await rs_client.create(POD(pod))
            elif want < len(pods):
                for victim in pods_to_delete(pods, len(pods) - want, order):
                    name = victim["metadata"]["name"]
                    if os.environ.get("BENCH_DEBUG") and workers[name].holding:
                        cost = (victim["metadata"].get("annotations") or {}).get(COST)
                        w, now = workers[name], time.monotonic()
                        print(
                            f"deleting busy {name} (cost {cost}): idle answer {now - w.idle_answered:.3f} s ago, "
                            f"job taken {now - w.holding_since:.3f} s ago",
                            file=sys.stderr,
                        )
                    with contextlib.suppress(ApiError):
                        await rs_client.delete(POD, name, namespace=ns)
                    task = asyncio.create_task(workers[name].terminate())
                    workers[name].stopping = True
                    stopping.add(task)
                    task.add_done_callback(stopping.discard)

        rs = asyncio.create_task(replicaset())

        async def running() -> int:
            alive = [w for w in workers.values() if w.task is not None and not w.task.done()]
            if os.environ.get("BENCH_DEBUG"):
                spec = server.objects[deploy_res, ns, "worker"].raw["spec"]["replicas"]
                print(f"spec={spec} alive={[(w.name, w.holding, w.stopping) for w in alive]}", file=sys.stderr)
            return len(alive)

        async def stop() -> None:
            await controller.close()
            rs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rs
            await asyncio.gather(*(w.terminate() for w in workers.values() if w.task and not w.task.done()))
            await asyncio.gather(*stopping, return_exceptions=True)
            await client.aclose()
            await rs_client.aclose()
            await http_server.__aexit__(None, None, None)
            await server.__aexit__(None, None, None)

        return running, stop

    return start


def _pct(b: dict[str, Any], a: dict[str, Any]) -> float:
    return round(float(b["replica_seconds"] - a["replica_seconds"]) / float(a["replica_seconds"]) * 100, 1)


async def run(seed: int, runtimes: list[str], repeat: int) -> dict[str, Any]:
    """`repeat` rounds; in each, every runtime's (a) then (b) (and Kubernetes' (b) with a slow kubelet)."""
    jobs = plan(seed)
    out: dict[str, Any] = {r: {"rounds": []} for r in runtimes}
    for n in range(repeat):
        for runtime in runtimes:
            starter = local_starter if runtime == "local" else kube_starter
            keda = await run_once(f"{runtime} (a)", starter(False), jobs)
            aware = await run_once(f"{runtime} (b)", starter(True), jobs)
            one: dict[str, Any] = {
                "keda": keda,
                "busy_aware": aware,
                "extra_replica_seconds_pct": _pct(aware, keda),
                "loadavg": os.getloadavg()[0],
            }
            line = (
                f"scale_in round {n + 1} {runtime}: interrupted {keda['jobs_interrupted']} -> "
                f"{aware['jobs_interrupted']}, p95 {keda['completion_p95_s']} -> {aware['completion_p95_s']} s, "
                f"replica-seconds {keda['replica_seconds']:.0f} -> {aware['replica_seconds']:.0f} "
                f"({one['extra_replica_seconds_pct']:+.1f} %)"
            )
            if keda["livelock"]:
                line += f", (a) livelock on {keda['livelock']['jobs']}"
            if runtime == "kubernetes":
                slow = await run_once(f"{runtime} (b, slow kubelet)", kube_starter(True, slow_kubelet=True), jobs)
                one["busy_aware_slow_kubelet"] = slow
                one["extra_replica_seconds_pct_slow_kubelet"] = _pct(slow, keda)
                line += (
                    f"; slow kubelet: interrupted {slow['jobs_interrupted']}, "
                    f"replica-seconds {slow['replica_seconds']:.0f} ({_pct(slow, keda):+.1f} %)"
                )
            out[runtime]["rounds"].append(one)
            print(line, flush=True)
    for runtime, result in out.items():
        rounds = result["rounds"]
        result["busy_aware_jobs_interrupted"] = [r["busy_aware"]["jobs_interrupted"] for r in rounds]
        result["keda_jobs_interrupted"] = [r["keda"]["jobs_interrupted"] for r in rounds]
        result["extra_replica_seconds_pct"] = [r["extra_replica_seconds_pct"] for r in rounds]
        if runtime == "kubernetes":
            result["slow_kubelet_jobs_interrupted"] = [r["busy_aware_slow_kubelet"]["jobs_interrupted"] for r in rounds]
            result["extra_replica_seconds_pct_slow_kubelet"] = [
                r["extra_replica_seconds_pct_slow_kubelet"] for r in rounds
            ]
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_in", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--runtime", choices=["local", "kubernetes"], action="append")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (a) and (b) per runtime")
    args = parser.parse_args(argv)
    runtimes = args.runtime or ["local", "kubernetes"]
    load_before = os.getloadavg()
    measured = asyncio.run(run(args.seed, runtimes, args.repeat))
    previous = RESULTS / "scale_in.json"
    if args.runtime and previous.exists():  # one runtime re-measured: the other's figures stay, with their date
        kept = json.loads(previous.read_text()).get("results", {})
        measured = {**{k: v for k, v in kept.items() if k not in measured}, **measured}
    data = {
        "command": "python -m bench.scale_in"
        + (f" --seed {args.seed}" if args.seed != 13 else "")
        + (f" --repeat {args.repeat}" if args.repeat != 1 else ""),
        "loadavg_before": [round(x, 2) for x in load_before],
        "seed": args.seed,
        "time_compression": SCALE,
        "jobs": JOBS,
        "job_length_s": [JOB_MIN, JOB_MAX],
        "load_s": LOAD_SECONDS / SCALE,
        "grace_period_s": GRACE / SCALE,
        "max_drain_seconds": MAX_DRAIN / SCALE,
        "kubelet_sync_s_slow_variant": KUBELET_SYNC / SCALE,
        "scaled_object": {
            "trigger": f"redis listLength {LIST_LENGTH}",
            "min": 0,
            "max": MAX_REPLICAS,
            "pollingInterval_s_compressed": POLLING,
            "cooldownPeriod_s_compressed": COOLDOWN,
            "scaleDown_stabilization_s_compressed": STABILIZATION,
        },
        "results": measured,
    }
    write_result("scale_in", data)
    return data


if __name__ == "__main__":
    main()
