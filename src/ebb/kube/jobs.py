"""The ScaledJob controller: one polling task per ScaledJob that creates Kubernetes Jobs as KEDA does.

Follows KEDA (kedacore/keda, main): `reconcileScaledJob`, `checkIfPaused` and `deletePreviousVersionScaleJobs`
(controllers/keda/scaledjob_controller.go), `RequestJobScale`, `generateJobs`, the running/pending counts and
`cleanUp` (pkg/scaling/executor/scale_jobs.go). How many Jobs to create comes from the pure core
(`ebb.scaling.jobs.decide_jobs`); this module lists, creates and deletes Jobs and writes status and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube.types import CascadeType, PatchType

from ebb import __version__
from ebb.errors import EbbError, SpecError
from ebb.kube import status as st
from ebb.kube.auth import PrefetchedStore, container_env, prefetch_auth
from ebb.kube.client import API_ERRORS, EVENT, JOB, POD, SCALED_JOB, AsyncClient, api_message, to_dict
from ebb.kube.endpoints import endpoint_slice_lister
from ebb.kube.hpa import MANAGED_BY, owner_reference
from ebb.kube.operator import OperatorOptions, _error_text, log_event
from ebb.runtime.build import build_scalers, object_ref
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.scaled_job import trigger_failure_events
from ebb.runtime.scaled_object import close_scalers, read_trigger
from ebb.scalers.base import Scaler
from ebb.scaling.jobs import JobDecision, JobStrategy, decide_jobs
from ebb.scaling.types import Condition, ScalingEvent
from ebb.spec import parse_object, pause_state
from ebb.spec.models import ScaledJob

log = logging.getLogger("ebb.operator")


SCALED_JOB_LABEL = "scaledjob.keda.sh/name"
GENERATION_ANNOTATION = "scaledjob.keda.sh/generation"
EXCLUDED_LABELS_ANNOTATION = "scaledjob.keda.sh/job-excluded-labels"
#: The label the Job controller puts on a Job's pods.
JOB_NAME_LABEL = "job-name"

READY_MESSAGE = "ScaledJob is defined correctly and is ready to scaling"
PAUSED_MESSAGE = "ScaledJob is paused"
UNPAUSED_MESSAGE = "ScaledJob is unpaused"


# --- pure helpers (manifests in, manifests out) ---------------------------------------------------------


def build_job(scaled_job: Mapping[str, Any]) -> dict[str, Any]:
    """The Job KEDA's generateJobs makes from a ScaledJob manifest (one of them; the server names it)."""
    meta = scaled_job.get("metadata") or {}
    name = str(meta.get("name", ""))
    sj_labels: Mapping[str, str] = meta.get("labels") or {}
    sj_annotations: Mapping[str, str] = meta.get("annotations") or {}
    spec = copy.deepcopy(dict((scaled_job.get("spec") or {}).get("jobTargetRef") or {}))
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    template_meta["generateName"] = f"{name}-"
    template_meta.setdefault("labels", {})[SCALED_JOB_LABEL] = name
    pod_spec = template.setdefault("spec", {})
    if not pod_spec.get("restartPolicy"):
        # A Job refuses restartPolicy Always, the default a client would otherwise fill in.
        pod_spec["restartPolicy"] = "OnFailure"

    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/part-of": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SCALED_JOB_LABEL: name,
    }
    # KEDA splits on "," without trimming: "a, b" excludes "a" and " b".
    excluded = (
        set(sj_annotations[EXCLUDED_LABELS_ANNOTATION].split(","))
        if EXCLUDED_LABELS_ANNOTATION in sj_annotations
        else set()
    )
    labels.update({k: v for k, v in sj_labels.items() if k not in excluded})
    annotations = {GENERATION_ANNOTATION: str(int(meta.get("generation") or 0))}
    annotations.update(sj_annotations)
    job_meta: dict[str, Any] = {
        "generateName": f"{name}-",
        "namespace": meta.get("namespace", "default"),
        "labels": labels,
        "annotations": annotations,
    }
    if meta.get("uid"):
        job_meta["ownerReferences"] = [
            owner_reference(
                "ScaledJob", name, str(meta["uid"]), str(scaled_job.get("apiVersion") or "keda.sh/v1alpha1")
            )
        ]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": spec}


def finished_type(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" when the Job has that condition True, else None (still running)."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def is_pending(pods: Sequence[Mapping[str, Any]], pending_pod_conditions: Sequence[str]) -> bool:
    """Whether an unfinished Job still waits for its pods.

    Without pendingPodConditions: no pod Running or Succeeded. With them, KEDA counts every listed condition
    that is True on any of the Job's pods and calls the Job pending unless the count equals the list's length.
    """
    if pending_pod_conditions:
        fulfilled = 0
        for pod in pods:
            pod_conditions = (pod.get("status") or {}).get("conditions") or ()
            for wanted in pending_pod_conditions:
                fulfilled += sum(1 for c in pod_conditions if c.get("type") == wanted and c.get("status") == "True")
        return fulfilled != len(pending_pod_conditions)
    return not any((pod.get("status") or {}).get("phase") in ("Running", "Succeeded") for pod in pods)


def _finished_at(job: Mapping[str, Any]) -> str:
    # KEDA sorts by completionTime only; failed Jobs have none, so ebb falls back to when they failed.
    status = job.get("status") or {}
    if status.get("completionTime"):
        return str(status["completionTime"])
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Failed" and cond.get("lastTransitionTime"):
            return str(cond["lastTransitionTime"])
    return str((job.get("metadata") or {}).get("creationTimestamp") or "")


def history_to_delete(
    jobs: Sequence[Mapping[str, Any]], successful_limit: int, failed_limit: int
) -> list[Mapping[str, Any]]:
    """Finished Jobs beyond the history limits, the oldest first (successful ones, then failed ones)."""
    out: list[Mapping[str, Any]] = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        done = sorted((j for j in jobs if finished_type(j) == kind), key=_finished_at)
        if len(done) > limit:
            out.extend(done[: len(done) - limit])
    return out


def previous_generation(jobs: Sequence[Mapping[str, Any]], generation: int) -> list[Mapping[str, Any]]:
    """Jobs without the generation annotation or with another generation (rollout strategy immediate)."""
    wanted = str(generation)
    return [
        j for j in jobs if ((j.get("metadata") or {}).get("annotations") or {}).get(GENERATION_ANNOTATION) != wanted
    ]


def _name(manifest: Mapping[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("name", ""))


def _labels(manifest: Mapping[str, Any]) -> Mapping[str, str]:
    return (manifest.get("metadata") or {}).get("labels") or {}


# --- the controller -------------------------------------------------------------------------------------


@dataclass
class _JobRuntime:
    """One ScaledJob's live parts."""

    sj: ScaledJob
    body: dict[str, Any]
    scalers: list[Scaler]
    strategy: JobStrategy
    was_active: bool
    task: asyncio.Task[None] | None = None
    failing: set[str] = field(default_factory=set)
    last_decision: JobDecision | None = None
    #: Prometheus metrics, history, event log and CloudEvents (OperatorOptions.services), as in `ebb run`.
    observer: Observer = field(default_factory=Observer)

    @property
    def ref(self) -> ObjectRef:
        return object_ref(self.sj)


class ScaledJobController:
    """Reconciles ScaledJobs and runs their polling loops."""

    def __init__(
        self, client: AsyncClient, options: OperatorOptions | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.options = options or OperatorOptions()
        self.clock = clock
        #: Start each object's loop on reconcile (tests turn this off and poll by hand).
        self.autostart = True
        self.runtimes: dict[tuple[str, str], _JobRuntime] = {}

    # --- API ------------------------------------------------------------------------------------------

    async def emit(self, body: Mapping[str, Any], event: ScalingEvent) -> None:
        if self.options.cloudevents is not None:
            self.options.cloudevents.kube_event(st.object_reference(body), event, self.clock())
        try:
            await self.client.create(EVENT(st.event_manifest(st.object_reference(body), event, self.clock())))
        except API_ERRORS as exc:
            log.warning("ScaledJob %s: cannot post an Event: %s", _name(body), api_message(exc))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.client.patch(
            SCALED_JOB.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )

    async def _current_status(self, namespace: str, name: str) -> dict[str, Any]:
        obj = to_dict(await self.client.get(SCALED_JOB, name, namespace=namespace))
        return dict(obj.get("status") or {})

    async def list_jobs(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The Jobs of one ScaledJob (by its label)."""
        selector: dict[str, Any] = {SCALED_JOB_LABEL: name}
        jobs = [to_dict(j) async for j in self.client.list(JOB, namespace=namespace, labels=selector)]
        # The selector is also applied here: cheap, and it keeps a server that ignores it from misleading us.
        return [j for j in jobs if _labels(j).get(SCALED_JOB_LABEL) == name]

    async def count_jobs(self, sj: ScaledJob, jobs: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """(running, pending): Jobs not Complete/Failed, and those of them whose pods have not started."""
        running = [j for j in jobs if finished_type(j) is None]
        if not running:
            return 0, 0
        namespace = sj.metadata.namespace or "default"
        pods = [to_dict(p) async for p in self.client.list(POD, namespace=namespace)]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            job_name = _labels(pod).get(JOB_NAME_LABEL)
            if job_name:
                by_job.setdefault(job_name, []).append(pod)
        conditions = sj.spec.scaling_strategy.pending_pod_conditions
        pending = sum(1 for j in running if is_pending(by_job.get(_name(j), []), conditions))
        return len(running), pending

    async def _delete_job(self, namespace: str, name: str, cascade: CascadeType) -> None:
        await self.client.delete(JOB, name, namespace=namespace, cascade=cascade)

    # --- reconcile ------------------------------------------------------------------------------------

    async def _fail(self, body: Mapping[str, Any], message: str) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
        log.warning("ScaledJob %s/%s: %s", namespace, name, message)
        updates = {
            "Ready": Condition("False", "ScaledJobCheckFailed", message),
            "Active": Condition("Unknown", "UnknownState", "ScaledJob check failed"),
        }
        existing = (body.get("status") or {}).get("conditions")
        try:
            await self.patch_status(namespace, name, {"conditions": st.merge_conditions(existing, updates)})
        except API_ERRORS as exc:
            log.warning("ScaledJob %s/%s: cannot write status: %s", namespace, name, api_message(exc))
        await self.emit(body, ScalingEvent("ScaledJobCheckFailed", message, "Warning"))

    async def reconcile(self, body: Mapping[str, Any]) -> bool:
        """Bring one ScaledJob's loop in line with its spec. Never raises for a broken object: it reports it, and
        returns False when trying again later may succeed (as ScaledObjectController.reconcile)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        await self.stop(key)
        obj, errors = parse_object(dict(body), label=f"ScaledJob {key[0]}/{key[1]}")
        if errors or not isinstance(obj, ScaledJob):
            await self._fail(body, "; ".join(_error_text(e) for e in errors) or "not a ScaledJob")
            return True
        try:
            await self._reconcile(obj, dict(body))
        except EbbError as exc:
            await self._fail(body, _error_text(exc))
            return False
        except API_ERRORS as exc:
            await self._fail(body, f"Kubernetes API: {api_message(exc)}")
            return False
        return True

    async def _reconcile(self, sj: ScaledJob, body: dict[str, Any]) -> None:
        namespace, name = sj.metadata.namespace or "default", sj.name
        existing = dict(body.get("status") or {})
        conditions: dict[str, Condition] = {}
        was_paused = any(
            c.get("type") == "Paused" and c.get("status") == "True" for c in existing.get("conditions") or ()
        )
        ready_before = next((c for c in existing.get("conditions") or () if c.get("type") == "Ready"), None)
        was_ready = ready_before is not None and ready_before.get("status") == "True"
        status: dict[str, Any] = {}

        if pause_state(sj).paused:
            if not was_paused:
                conditions["Paused"] = Condition("True", "ScaledJobPaused", PAUSED_MESSAGE)
                await self.emit(body, ScalingEvent("ScaledJobPaused", PAUSED_MESSAGE))
            # KEDA reports a paused ScaledJob Ready, with this message.
            await self._ready(body, existing, conditions, status, "ScaledJob is paused, skipping reconcile loop")
            return
        if was_paused:
            conditions["Paused"] = Condition("False", "ScaledJobUnpaused", UNPAUSED_MESSAGE)
            await self.emit(body, ScalingEvent("ScaledJobUnpaused", UNPAUSED_MESSAGE))

        for index, trigger in enumerate((body.get("spec") or {}).get("triggers") or ()):
            if isinstance(trigger, Mapping) and trigger.get("metricType"):
                raise SpecError(sj.ref, f"spec.triggers[{index}].metricType", "cannot be set in ScaledJob triggers")
        status["triggersTypes"] = st.triggers_types(sj)
        status["authenticationsTypes"] = st.authentications_types(sj)

        message = await self._rollout(sj, body)
        scalers = await self._build_scalers(sj, body)
        try:
            status["externalMetricNames"] = [await _metric_name(s) for s in scalers]
        except BaseException:
            await close_scalers(scalers)
            raise
        strategy = sj.spec.scaling_strategy
        services = self.options.services
        self.runtimes[(namespace, name)] = _JobRuntime(
            sj=sj,
            body=body,
            scalers=scalers,
            strategy=JobStrategy(
                strategy=strategy.strategy,
                custom_scaling_queue_length_deduction=strategy.custom_scaling_queue_length_deduction,
                custom_scaling_running_job_percentage=strategy.custom_scaling_running_job_percentage,
                multiple_scalers_calculation=strategy.multiple_scalers_calculation,
            ),
            was_active=any(
                c.get("type") == "Active" and c.get("status") == "True" for c in existing.get("conditions") or ()
            ),
            observer=services.observers(Observer(), [sj]) if services is not None else Observer(),
        )
        await self._ready(body, existing, conditions, status, message or READY_MESSAGE, was_ready=was_ready)
        if self.autostart:
            self.start((namespace, name))

    async def _ready(
        self,
        body: Mapping[str, Any],
        existing: Mapping[str, Any],
        conditions: dict[str, Condition],
        status: dict[str, Any],
        message: str,
        *,
        was_ready: bool | None = None,
    ) -> None:
        meta = body.get("metadata") or {}
        if was_ready is None:
            was_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in existing.get("conditions") or ()
            )
        conditions["Ready"] = Condition("True", "ScaledJobReady", message)
        status["conditions"] = st.merge_conditions(existing.get("conditions"), conditions)
        await self.patch_status(str(meta.get("namespace", "default")), str(meta.get("name", "")), status)
        if not was_ready:
            await self.emit(body, ScalingEvent("ScaledJobReady", "ScaledJob is ready for scaling"))

    async def _rollout(self, sj: ScaledJob, body: Mapping[str, Any]) -> str | None:
        """Rollout strategy immediate: delete the Jobs of earlier generations of the ScaledJob."""
        if sj.spec.effective_rollout_strategy == "gradual":
            return None
        namespace = sj.metadata.namespace or "default"
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        old = previous_generation(await self.list_jobs(namespace, sj.name), generation)
        if not old:
            return None
        cascade = (
            CascadeType.FOREGROUND if sj.spec.rollout.propagation_policy == "foreground" else CascadeType.BACKGROUND
        )
        await self.emit(
            body,
            ScalingEvent(
                "ScaledJobRolloutCleanupStarted",
                f"Deleting {len(old)} jobs owned by the previous version of the scaledJob",
            ),
        )
        for job in old:
            try:
                await self._delete_job(namespace, _name(job), cascade)
            except API_ERRORS as exc:
                await self.emit(
                    body,
                    ScalingEvent(
                        "ScaledJobRolloutCleanupFailed",
                        f"Failed to delete job {_name(job)}: {api_message(exc)}",
                        "Warning",
                    ),
                )
                raise
        await self.emit(
            body,
            ScalingEvent(
                "ScaledJobRolloutCleanupCompleted",
                f"Deleted {len(old)} jobs owned by the previous version of the scaledJob",
            ),
        )
        return (
            "RolloutStrategy: immediate, deleted jobs owned by the previous version of the scaleJob: "
            f"{len(old)} jobs deleted"
        )

    async def _build_scalers(self, sj: ScaledJob, body: Mapping[str, Any]) -> list[Scaler]:
        store = PrefetchedStore()
        await prefetch_auth(
            self.client, sj, cluster_object_namespace=self.options.cluster_object_namespace, store=store
        )
        template_spec = (((body.get("spec") or {}).get("jobTargetRef") or {}).get("template") or {}).get("spec") or {}
        containers = [c for c in template_spec.get("containers") or () if isinstance(c, dict)]
        env = await container_env(
            self.client,
            store,
            containers,
            sj.metadata.namespace or "default",
            wanted=sj.spec.env_source_container_name,
            obj=sj.ref,
            path="spec.jobTargetRef.template.spec.containers",
        )
        return build_scalers(
            sj,
            store,
            env,
            env_secrets=env.secret_values,
            timeout=self.options.timeout,
            cluster_object_namespace=self.options.cluster_object_namespace,
            endpoint_slices=endpoint_slice_lister(self.client),
        )

    # --- the loop -------------------------------------------------------------------------------------

    async def _report(self, runtime: _JobRuntime, event: ScalingEvent) -> None:
        """A Kubernetes Event, the same to the observers (event log, metrics, CloudEvents), and a log line."""
        log_event(str(runtime.ref), event)
        await self.emit(runtime.body, event)
        runtime.observer.event(runtime.ref, event, self.clock())

    async def poll_once(self, key: tuple[str, str], lateness: float = 0.0) -> JobDecision | None:
        """One poll of KEDA's RequestJobScale: read triggers, count Jobs, create, update status, clean up."""
        runtime = self.runtimes.get(key)
        if runtime is None:
            return None
        sj = runtime.sj
        namespace, name = key
        started = time.perf_counter()
        results = tuple(await asyncio.gather(*(read_trigger(s) for s in runtime.scalers)))
        read_seconds = time.perf_counter() - started
        now = self.clock()
        for event in trigger_failure_events(results, runtime.failing):
            await self._report(runtime, event)
        jobs = await self.list_jobs(namespace, name)
        running, pending = await self.count_jobs(sj, jobs)
        decision = decide_jobs(
            results, running, pending, sj.spec.min_replica_count, sj.spec.max_replica_count, runtime.strategy
        )
        runtime.last_decision = decision
        status: dict[str, Any] = {}
        if decision.active:
            status["lastActiveTime"] = st.rfc3339(now)
            if decision.jobs_to_create > 0:
                await self._create_jobs(runtime, decision.jobs_to_create)
        if decision.active != runtime.was_active:
            reason = "ScaledJobActive" if decision.active else "ScaledJobInactive"
            message = decision.conditions["Active"].message
            await self._report(runtime, ScalingEvent(reason, message))
            runtime.was_active = decision.active
        runtime.observer.poll(
            PollRecord(
                ref=runtime.ref,
                time=now,
                triggers=results,
                decision=None,
                current_replicas=running,
                desired_replicas=running + decision.jobs_to_create,
                ready_replicas=running - pending,
                lateness=lateness,
                read_seconds=read_seconds,
            )
        )
        try:
            existing = await self._current_status(namespace, name)
            status["conditions"] = st.merge_conditions(existing.get("conditions"), decision.conditions)
            status["triggersActivity"] = st.triggers_activity(
                (r.metric_name for r in results), (r.metric_name for r in results if r.active), existing
            )
            if st.patch_changes(status, existing):
                await self.patch_status(namespace, name, status)
        except API_ERRORS as exc:
            log.warning("ScaledJob %s/%s: cannot write status: %s", namespace, name, api_message(exc))
        # The listing made before creating: Jobs just created are unfinished, so it holds every Job cleanup may delete.
        await self._clean_up(sj, jobs)
        return decision

    async def _create_jobs(self, runtime: _JobRuntime, count: int) -> None:
        manifest = build_job(runtime.body)
        for _ in range(count):
            try:
                await self.client.create(JOB(copy.deepcopy(manifest)))
            except API_ERRORS as exc:
                message = f"Failed to create job {manifest['metadata']['generateName']}: {api_message(exc)}"
                await self._report(runtime, ScalingEvent("KEDAJobCreateFailed", message, "Warning"))
        # KEDA reports the count it asked for, whatever failed.
        await self._report(runtime, ScalingEvent("KEDAJobsCreated", f"Created {count} jobs"))

    async def _clean_up(self, sj: ScaledJob, jobs: Sequence[Mapping[str, Any]]) -> None:
        """Delete finished Jobs beyond the history limits (KEDA deletes them with background propagation)."""
        namespace = sj.metadata.namespace or "default"
        extra = history_to_delete(jobs, sj.spec.successful_jobs_history_limit, sj.spec.failed_jobs_history_limit)
        for job in extra:
            try:
                await self._delete_job(namespace, _name(job), CascadeType.BACKGROUND)
            except API_ERRORS as exc:
                log.warning("ScaledJob %s: cannot delete job %s: %s", sj.ref, _name(job), api_message(exc))
                return

    async def _run(self, key: tuple[str, str], interval: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            started = loop.time()
            try:
                await self.poll_once(key, lateness=max(0.0, started - next_at))
            except API_ERRORS as exc:
                log.warning("ScaledJob %s/%s: %s", key[0], key[1], api_message(exc))
            except Exception:
                log.exception("ScaledJob %s/%s: poll failed", *key)
            next_at = started + interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def start(self, key: tuple[str, str]) -> None:
        runtime = self.runtimes.get(key)
        if runtime is not None and runtime.task is None:
            interval = float(runtime.sj.spec.polling_interval)
            runtime.task = asyncio.create_task(self._run(key, interval), name=f"ebb:sj:{key[0]}/{key[1]}")

    async def stop(self, key: tuple[str, str]) -> None:
        """Stop the object's loop and release its scalers."""
        runtime = self.runtimes.pop(key, None)
        if runtime is None:
            return
        if runtime.task is not None:
            runtime.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.task
        await close_scalers(runtime.scalers)

    async def close(self) -> None:
        for key in list(self.runtimes):
            await self.stop(key)

    async def delete(self, body: Mapping[str, Any]) -> None:
        """The ScaledJob is going: stop its loop (its Jobs go with it by ownerReference)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        runtime = self.runtimes.get(key)
        await self.stop(key)
        if runtime is not None:
            runtime.observer.removed(runtime.ref)  # its Prometheus series go; CloudEvents says it was removed


async def _metric_name(scaler: Scaler) -> str:
    await scaler.prepare()
    return scaler.metric_spec().name
