"""The cpu and memory triggers, measuring real worker processes (busy, idle, allocating, with children)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence

import pytest

from ebb.errors import SpecError
from ebb.runtime.build import build_scalers
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.scalers import TriggerContext, build_scaler
from ebb.scalers.base import MetricType, Scaler
from ebb.spec.loader import load_text
from tests.runtime._support import Recorder, eventually

MiB = 2**20

IDLE = "import time; print('ready', flush=True); time.sleep(60)"
BUSY = "print('ready', flush=True)\nwhile True: pass"
#: Writes every byte, so that the 60 MiB are resident and not just reserved.
ALLOCATE = "b = bytearray(b'x') * (60 * 2**20); print('ready', flush=True); import time; time.sleep(60)"


def _parent_of(child_code: str) -> str:
    """A worker that idles while a child process it started does the work."""
    return textwrap.dedent(f"""\
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {child_code!r}], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        print("ready", flush=True)
        time.sleep(60)
        """)


Spawn = Callable[[str], int]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a worker running `code` and wait until it says it is ready; every worker (and child) is killed after."""
    procs: list[subprocess.Popen[str]] = []

    def _spawn(code: str) -> int:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc.pid

    yield _spawn
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def make(
    trigger_type: str,
    metadata: dict[str, str],
    metric_type: MetricType = "AverageValue",
    *,
    pids: Sequence[int] | None = None,
    requests: dict[str, float] | None = None,
) -> Scaler:
    ctx = TriggerContext(
        name="workers",
        trigger_type=trigger_type,
        metric_type=metric_type,
        target_pids=(lambda: list(pids)) if pids is not None else None,
        target_requests=requests,
    )
    return build_scaler(trigger_type, metadata, ctx=ctx)


# --- cpu -------------------------------------------------------------------------------------------


async def test_cpu_of_a_busy_worker_is_most_of_a_core_on_first_and_later_reads(spawn: Spawn) -> None:
    scaler = make("cpu", {"value": "500m"}, pids=[spawn(BUSY)])
    first = await scaler.get_metric_and_activity()  # primed over a short sample
    await asyncio.sleep(0.3)
    second = await scaler.get_metric_and_activity()  # since the first read
    # In cores, not percent; a loaded 2-core machine can leave the busy worker a fifth of a core.
    for reading in (first, second):
        assert 0.1 < reading.value < 1.5
        assert reading.active


async def test_cpu_of_an_idle_worker_is_near_zero_and_still_active(spawn: Spawn) -> None:
    scaler = make("cpu", {"value": "500m"}, pids=[spawn(IDLE)])
    first = await scaler.get_metric_and_activity()
    await asyncio.sleep(0.2)
    second = await scaler.get_metric_and_activity()
    assert first.value < 0.2
    assert second.value < 0.2
    assert second.active  # KEDA: cpu and memory triggers are always active


async def test_cpu_counts_the_workers_children(spawn: Spawn) -> None:
    scaler = make("cpu", {"value": "1"}, pids=[spawn(_parent_of(BUSY))])
    assert (await scaler.get_metric_and_activity()).value > 0.1


async def test_cpu_is_averaged_over_the_running_workers(spawn: Spawn) -> None:
    busy, idle = spawn(BUSY), spawn(IDLE)
    alone = await make("cpu", {"value": "1"}, pids=[busy]).get_metric_and_activity()
    both = await make("cpu", {"value": "1"}, pids=[busy, idle]).get_metric_and_activity()
    assert alone.value > 0.1
    assert 0.05 < both.value < 0.8


async def test_cpu_utilization_is_relative_to_the_request(spawn: Spawn) -> None:
    busy, idle = spawn(BUSY), spawn(IDLE)
    requests = {"cpu": 0.5}
    # Cores and utilization read over the same moment, so the ratio holds however loaded the machine is.
    hot, cores = await asyncio.gather(
        make("cpu", {"value": "50"}, "Utilization", pids=[busy], requests=requests).get_metric_and_activity(),
        make("cpu", {"value": "1"}, pids=[busy]).get_metric_and_activity(),
    )
    cold = await make("cpu", {"value": "50"}, "Utilization", pids=[idle], requests=requests).get_metric_and_activity()
    assert cores.value > 0.1
    assert hot.value == pytest.approx(cores.value * 100 / 0.5, rel=0.35)
    assert cold.value < 40


# --- memory ----------------------------------------------------------------------------------------


async def test_memory_is_the_average_resident_size_per_worker(spawn: Spawn) -> None:
    big, small = spawn(ALLOCATE), spawn(IDLE)
    big_alone = await make("memory", {"value": "256Mi"}, pids=[big]).get_metric_and_activity()
    small_alone = await make("memory", {"value": "256Mi"}, pids=[small]).get_metric_and_activity()
    both = await make("memory", {"value": "256Mi"}, pids=[big, small]).get_metric_and_activity()
    assert 55 * MiB < big_alone.value < 400 * MiB
    assert small_alone.value < 50 * MiB
    assert both.value == pytest.approx((big_alone.value + small_alone.value) / 2, rel=0.1)
    assert both.active


async def test_memory_counts_the_workers_children(spawn: Spawn) -> None:
    reading = await make("memory", {"value": "256Mi"}, pids=[spawn(_parent_of(ALLOCATE))]).get_metric_and_activity()
    assert reading.value > 55 * MiB


async def test_memory_utilization_is_relative_to_the_request(spawn: Spawn) -> None:
    pid = spawn(ALLOCATE)
    absolute = await make("memory", {"value": "1Gi"}, pids=[pid]).get_metric_and_activity()
    relative = await make(
        "memory", {"value": "80"}, "Utilization", pids=[pid], requests={"memory": 100 * MiB}
    ).get_metric_and_activity()
    assert relative.value > 55
    assert relative.value == pytest.approx(absolute.value / (100 * MiB) * 100, rel=0.1)


# --- no workers, no target -------------------------------------------------------------------------


@pytest.mark.parametrize("trigger_type", ["cpu", "memory"])
async def test_without_a_running_worker_the_value_is_zero(trigger_type: str) -> None:
    reading = await make(trigger_type, {"value": "1"}, pids=[]).get_metric_and_activity()
    assert reading.value == 0
    assert reading.active


@pytest.mark.parametrize("trigger_type", ["cpu", "memory"])
async def test_a_worker_that_exited_is_left_out(trigger_type: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    reading = await make(trigger_type, {"value": "1"}, pids=[proc.pid]).get_metric_and_activity()
    assert reading.value == 0


@pytest.mark.parametrize("trigger_type", ["cpu", "memory"])
async def test_outside_a_local_process_group_it_is_always_active_as_in_keda(trigger_type: str) -> None:
    """In Kubernetes metrics-server measures cpu/memory for the HPA; KEDA's scalers report 0, active."""
    scaler = make(trigger_type, {"value": "50"}, "Utilization")  # as in Kubernetes: no pids, no requests
    assert scaler.metric_spec().target == 50
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 0 and reading.active


# --- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger_type", "metric_type", "value", "target"),
    [
        ("cpu", "AverageValue", "500m", 0.5),
        ("cpu", "AverageValue", "2", 2.0),
        ("cpu", "AverageValue", "1.5", 1.5),
        ("memory", "AverageValue", "256Mi", 256 * MiB),
        ("memory", "AverageValue", "1G", 1e9),
        ("memory", "AverageValue", "512Ki", 512 * 1024),
        ("cpu", "Utilization", "50", 50.0),
        ("memory", "Utilization", "150", 150.0),
    ],
)
def test_metric_spec_is_a_resource_metric_with_the_parsed_target(
    trigger_type: str, metric_type: MetricType, value: str, target: float
) -> None:
    spec = make(trigger_type, {"value": value}, metric_type).metric_spec()
    assert spec.source == "Resource"
    assert spec.resource_name == trigger_type
    assert spec.metric_type == metric_type
    assert spec.target == pytest.approx(target)
    assert spec.name == f"s0-{trigger_type}"
    assert spec.container_name is None


def test_container_name_makes_a_container_resource_metric() -> None:
    scaler = make("memory", {"value": "256Mi", "containerName": "app"})
    assert scaler.metric_spec().container_name == "app"
    assert scaler.describe() == {"value": "256Mi", "containerName": "app"}
    assert scaler.activation_threshold() is None


@pytest.mark.parametrize(
    ("trigger_type", "metric_type", "metadata", "field", "message"),
    [
        ("cpu", "AverageValue", {}, "metadata.value", "required parameter missing"),
        ("cpu", "Utilization", {"value": "50.5"}, "metadata.value", "whole percent"),
        ("cpu", "Utilization", {"value": "0"}, "metadata.value", "greater than 0"),
        ("memory", "Utilization", {"value": "abc"}, "metadata.value", "'abc'"),
        ("memory", "Utilization", {"value": "99999999999"}, "metadata.value", "whole percent"),
        ("cpu", "AverageValue", {"value": "lots"}, "metadata.value", "'500m'"),
        ("memory", "AverageValue", {"value": "0"}, "metadata.value", "'256Mi'"),
        ("cpu", "AverageValue", {"value": "-500m"}, "metadata.value", "positive quantity"),
        ("cpu", "Value", {"value": "1"}, "metricType", "Utilization or AverageValue"),
    ],
)
def test_bad_metadata_is_a_spec_error_naming_the_field(
    trigger_type: str, metric_type: MetricType, metadata: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        make(trigger_type, metadata, metric_type)
    assert info.value.field == f"spec.triggers[0].{field}"
    assert message in str(info.value)
    assert "ScaledObject default/workers" in str(info.value)


@pytest.mark.parametrize("resource", ["cpu", "memory"])
def test_utilization_without_the_groups_request_is_an_error_when_built(resource: str) -> None:
    other = "memory" if resource == "cpu" else "cpu"
    with pytest.raises(SpecError) as info:
        make(resource, {"value": "50"}, "Utilization", pids=[], requests={other: 1.0})
    assert f"spec.resources.requests.{resource}" in str(info.value)
    assert info.value.field == "spec.triggers[0].metricType"
    # AverageValue needs no request.
    assert make(resource, {"value": "1"}, "AverageValue", pids=[], requests={}).metric_spec().target == 1


# --- from manifests --------------------------------------------------------------------------------


def _manifests(resources: str, trigger: str) -> str:
    """A ProcessGroup with `resources` (one line of its spec) and a ScaledObject with one trigger."""
    return (
        "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: workers}\n"
        f"spec:\n  command: [worker]\n  {resources}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: workers}\nspec:\n"
        "  scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: workers}\n"
        f"  minReplicaCount: 1\n  triggers:\n{textwrap.indent(trigger, '    ')}\n"
    )


CPU_UTILIZATION = "- type: cpu\n  metricType: Utilization\n  metadata: {value: '60'}"
MEMORY_UTILIZATION = "- type: memory\n  metricType: Utilization\n  metadata: {value: '80'}"


@pytest.mark.parametrize(
    ("resources", "trigger", "worker", "low", "high", "request_cores"),
    [
        # cores / 0.25-core request
        ("resources: {requests: {cpu: 250m}}", CPU_UTILIZATION, BUSY, 0, 0, 0.25),
        # 55 to 400 MiB of a 128 MiB request
        ("resources: {requests: {memory: 128Mi}}", MEMORY_UTILIZATION, ALLOCATE, 43, 313, 0),
        # As Kubernetes defaults it, a limit alone is also the request: cores / 2.
        ("resources: {limits: {cpu: '2'}}", CPU_UTILIZATION, BUSY, 0, 0, 2.0),
    ],
)
async def test_a_process_groups_request_reaches_the_scaler(
    spawn: Spawn, resources: str, trigger: str, worker: str, low: float, high: float, request_cores: float
) -> None:
    loaded = load_text(_manifests(resources, trigger))
    assert not loaded.errors
    so = loaded.resources.scaled_objects()[0]
    pid = spawn(worker)
    (scaler,) = build_scalers(so, loaded.resources, target_pids=lambda: [pid])
    assert scaler.metric_spec().metric_type == "Utilization"
    if "cpu" in trigger:
        # The same worker's cores over the same moment: utilization is cores / request, whatever the load.
        reading, cores = await asyncio.gather(
            scaler.get_metric_and_activity(), make("cpu", {"value": "1"}, pids=[pid]).get_metric_and_activity()
        )
        assert cores.value > 0.1
        assert reading.value == pytest.approx(cores.value * 100 / request_cores, rel=0.35)
    else:
        reading = await scaler.get_metric_and_activity()
        assert low < reading.value < high


@pytest.mark.parametrize(("trigger", "resource"), [(CPU_UTILIZATION, "cpu"), (MEMORY_UTILIZATION, "memory")])
def test_a_process_group_without_the_request_fails_to_build(trigger: str, resource: str) -> None:
    loaded = load_text(_manifests("resources: {requests: {}}", trigger))
    assert not loaded.errors
    with pytest.raises(SpecError) as info:
        build_scalers(loaded.resources.scaled_objects()[0], loaded.resources)
    assert f"spec.resources.requests.{resource}" in str(info.value)


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ("resources: {requests: {cpu: lots}}", "spec.resources.requests.cpu"),
        ("resources: {requests: {memory: 1Gi}, limits: {memory: 512Mi}}", "less than or equal to the memory limit"),
        ("resources: {requests: {gpu: 1}}", "spec.resources.requests.gpu"),
    ],
)
def test_bad_process_group_resources_are_load_errors(resources: str, message: str) -> None:
    loaded = load_text(_manifests(resources, CPU_UTILIZATION))
    assert any(message in str(e) for e in loaded.errors), [str(e) for e in loaded.errors]


# --- under `ebb run` -------------------------------------------------------------------------------


async def test_ebb_run_scales_a_busy_process_group_out_on_cpu_utilization() -> None:
    manifest = (
        "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: busy}\nspec:\n"
        f"  command: [{sys.executable!r}, '-c', {BUSY!r}]\n  terminationGracePeriodSeconds: 1\n"
        "  resources: {requests: {cpu: 100m}}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: busy}\nspec:\n"
        "  scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: busy}\n"
        "  minReplicaCount: 1\n  maxReplicaCount: 3\n  pollingInterval: 1\n"
        "  triggers:\n    - {type: cpu, metricType: Utilization, metadata: {value: '50'}}\n"
    )
    loaded = load_text(manifest)
    assert not loaded.errors, loaded.errors
    recorder = Recorder()
    runtime = LocalRuntime(loaded, recorder, RuntimeOptions(state_path=None, output=lambda name, line: None))
    await runtime.start()
    try:
        target = runtime.targets[("default", "busy")]
        # One worker using 0.3+ cores of a 0.1-core request is far above 50%: the HPA math asks for the max.
        await eventually(lambda: target.ready_replicas() == 3, within=15, what="scale out to 3 workers")
        values = [r.value for p in recorder.polls for r in p.triggers if r.value is not None]
        assert values and max(values) > 150
        assert not recorder.problems, recorder.problems
    finally:
        await runtime.stop()
