"""`ebb run`: every ScaledObject and ScaledJob of the loaded manifests, scaling local processes.

One broken object is reported (through the observer) and skipped; every other object keeps scaling.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from ebb.errors import EbbError, SpecError
from ebb.runtime.build import build_scalers, object_ref
from ebb.runtime.heap import freeze_heap, refreeze_after
from ebb.runtime.job_template import local_job_settings
from ebb.runtime.leftovers import stop_leftovers
from ebb.runtime.observer import RUNTIME_REF, ObjectRef, Observer
from ebb.runtime.predictive import HistorySource, with_prediction
from ebb.runtime.scaled_job import ScaledJobLoop
from ebb.runtime.scaled_object import ScaledObjectLoop, close_scalers, spread_offset
from ebb.runtime.state import StateStore
from ebb.scalers.base import DEFAULT_TIMEOUT
from ebb.scaling.jobs import JobStrategy
from ebb.scaling.lifecycle import ScaledObjectDecider, pause_state
from ebb.scaling.types import ScalingEvent
from ebb.spec.auth import ResolvedEnv, resolve_env
from ebb.spec.convert import object_policy
from ebb.spec.loader import LoadResult
from ebb.spec.models import ProcessGroup, ScaledJob, ScaledObject
from ebb.targets._child import RUN_ID_ENV
from ebb.targets.base import ChildRecord, EventSink, OutputSink
from ebb.targets.jobs import JobRunner
from ebb.targets.process import ProcessGroupTarget

L = TypeVar("L", ScaledObjectLoop, ScaledJobLoop)

#: ebb's own annotation: poll an idle object (at zero or idle replicas) this often, in seconds.
IDLE_POLLING_ANNOTATION = "ebb.dev/idle-polling-interval"
#: How long stopping waits for the scaling loops to end after cancelling them (a loop stuck in a library
#: that swallows a cancellation is cancelled again, then left behind).
LOOP_STOP_TIMEOUT = 3.0
#: At most this long for workers a killed ebb left behind to honour SIGTERM before SIGKILL.
LEFTOVER_GRACE = 10.0


@dataclass
class RuntimeOptions:
    state_path: Path | None = Path(".ebb/state.json")
    scaler_timeout: float = DEFAULT_TIMEOUT
    output: OutputSink | None = None
    #: ProcessGroup restart backoff (seconds): first delay, cap, and the run time that resets it.
    backoff: tuple[float, float, float] = (1.0, 60.0, 60.0)
    #: ScaledJob retry backoff after a failed attempt (seconds): first delay and cap, as Kubernetes' Job.
    job_backoff: tuple[float, float] = (10.0, 360.0)
    clock: Callable[[], float] = field(default=time.time)
    #: Where ebb.dev/predictive seeds its forecasters at start (the run's history store), None: they start empty.
    history: HistorySource | None = None


class RuntimeExtension(Protocol):
    """More objects in the same runtime (the HTTP interceptor's routes): `build` adds loops once the targets
    exist; `start` runs after the loops started; `stop` runs first when the runtime stops."""

    def build(self, runtime: LocalRuntime) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _idle_polling_interval(so: ScaledObject) -> float | None:
    raw = so.metadata.annotations.get(IDLE_POLLING_ANNOTATION)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise EbbError(
            f"{so.ref}: metadata.annotations[{IDLE_POLLING_ANNOTATION}]: expected a number of seconds > 0, got {raw!r}"
        )
    return value


class LocalRuntime:
    """Owns the targets and loops of one `ebb run`. `run()` until cancelled; everything stops gracefully."""

    def __init__(
        self,
        loaded: LoadResult,
        observer: Observer,
        options: RuntimeOptions | None = None,
        extensions: list[RuntimeExtension] | None = None,
    ) -> None:
        self.extensions = list(extensions or [])
        self.loaded = loaded
        self.resources = loaded.resources
        self.observer = observer
        self.options = options or RuntimeOptions()
        #: Every worker carries it in its environment ($EBB_RUN_ID): how a later ebb recognises leftovers.
        self.run_id = uuid.uuid4().hex
        self.state = StateStore(self.options.state_path, on_problem=self._state_problem, run_id=self.run_id)
        self.state.children_source = self.children
        self.targets: dict[tuple[str, str], ProcessGroupTarget] = {}
        self.envs: dict[tuple[str, str], ResolvedEnv] = {}
        self.loops: dict[ObjectRef, ScaledObjectLoop] = {}
        self.job_loops: dict[ObjectRef, ScaledJobLoop] = {}
        self.runners: dict[ObjectRef, JobRunner] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Which object a ProcessGroup's events are recorded under: the ScaledObject scaling it, if any.
        self._group_owner: dict[tuple[str, str], ObjectRef] = {}

    # --- building -------------------------------------------------------------------------------------

    def _problem(self, ref: ObjectRef, error: Exception | str) -> None:
        if isinstance(error, SpecError):  # with the file and line of the field at fault, as `ebb check` says it
            error = self.loaded.locate(error, self.resources.lookup(ref.kind, ref.namespace, ref.name))
        self.observer.problem(ref, str(error), self.options.clock())

    def _state_problem(self, reason: str, message: str) -> None:
        kind: Literal["Normal", "Warning"] = "Normal" if reason.endswith("Recovered") else "Warning"
        self.observer.event(RUNTIME_REF, ScalingEvent(reason, message, kind), self.options.clock())

    def _event_sink(self, default: ObjectRef, key: tuple[str, str] | None = None) -> EventSink:
        def sink(reason: str, message: str, type_: Literal["Normal", "Warning"]) -> None:
            ref = self._group_owner.get(key, default) if key is not None else default
            self.observer.event(ref, ScalingEvent(reason, message, type_), self.options.clock())

        return sink

    def children(self) -> list[ChildRecord]:
        """Every live worker and job process of this run."""
        out: list[ChildRecord] = []
        for target in self.targets.values():
            out.extend(target.children())
        for runner in self.runners.values():
            out.extend(runner.children())
        return out

    def kill_all(self) -> None:
        """SIGKILL every worker and job now, terminating ones included (a second Ctrl-C, a stop overrun)."""
        for target in self.targets.values():
            target.kill_all()
        for runner in self.runners.values():
            runner.kill_all()

    def max_grace(self) -> float:
        """The longest termination grace period of any target: how long a graceful stop may take."""
        graces = [t.termination_grace_period for t in self.targets.values()]
        graces += [r.termination_grace_period for r in self.runners.values()]
        return max(graces, default=0.0)

    def _build_targets(self) -> None:
        backoff_initial, backoff_max, backoff_reset = self.options.backoff
        for pg in self.resources.process_groups():
            ref = ObjectRef("ProcessGroup", pg.metadata.namespace, pg.metadata.name)
            try:
                env = resolve_env(pg, self.resources)
                target = ProcessGroupTarget(
                    pg.metadata.name,
                    pg.spec.command,
                    pg.spec.args,
                    env=env,
                    working_dir=pg.spec.working_dir,
                    termination_grace_period=float(pg.spec.termination_grace_period_seconds),
                    output=self.options.output,
                    backoff_initial=backoff_initial,
                    backoff_max=backoff_max,
                    backoff_reset_after=backoff_reset,
                    on_event=self._event_sink(ref, (pg.metadata.namespace, pg.metadata.name)),
                    extra_env={RUN_ID_ENV: self.run_id},
                    ports=pg.spec.ports,
                    readiness_probe=pg.spec.readiness_probe,
                    busy_probe=pg.spec.busy_probe,
                    max_drain_seconds=pg.spec.effective_max_drain_seconds,
                )
            except EbbError as exc:
                self._problem(ref, exc)
                continue
            self.targets[(pg.metadata.namespace, pg.metadata.name)] = target
            self.envs[(pg.metadata.namespace, pg.metadata.name)] = env

    def _build_scaled_object(self, so: ScaledObject, offset: float) -> ScaledObjectLoop | None:
        ref = object_ref(so)
        target_ref = so.spec.scale_target_ref
        if not target_ref.is_process_group:
            self._problem(
                ref,
                f"spec.scaleTargetRef: ebb run scales ProcessGroups (apiVersion ebb.dev/v1alpha1); "
                f"{target_ref.kind} {target_ref.name!r} needs a cluster: run `ebb operator` there",
            )
            return None
        key = (so.metadata.namespace, target_ref.name)
        target = self.targets.get(key)
        if target is None:
            if self.resources.scale_target(so) is None:
                self._problem(
                    ref, f"spec.scaleTargetRef: ProcessGroup {key[0]}/{key[1]} is not in the loaded manifests"
                )
            return None  # else the group itself failed and was reported already
        env = self.envs[key]
        try:
            scalers = build_scalers(
                so,
                self.resources,
                env,
                env_secrets=env.secret_values,
                timeout=self.options.scaler_timeout,
                target_pids=target.pids,
            )
            scalers = with_prediction(so, scalers, clock=self.options.clock, history=self.options.history, ref=ref)
            pause_state(so.metadata.annotations, str(ref))
            idle_interval = _idle_polling_interval(so)
            decider = ScaledObjectDecider(
                object_policy(so, now=self.options.clock()),
                state=self.state.lifecycle(ref.key),
                mode="direct",
                obj=str(ref),
                target=f"ProcessGroup {key[0]}/{key[1]}",
                trigger_names=[t.name for t in so.spec.triggers if t.name],
            )
        except EbbError as exc:
            self._problem(ref, exc)
            return None
        return ScaledObjectLoop(
            ref,
            scalers,
            target,
            decider,
            polling_interval=float(so.spec.polling_interval),
            observer=self.observer,
            annotations=so.metadata.annotations,
            state=self.state,
            idle_polling_interval=idle_interval,
            idle_replicas=so.spec.idle_replica_count,
            start_offset=offset,
            clock=self.options.clock,
        )

    def _build_scaled_job(self, sj: ScaledJob, offset: float) -> ScaledJobLoop | None:
        ref = object_ref(sj)
        try:
            container = sj.spec.job_container
            if not container.command:
                raise EbbError(
                    f"{ref}: spec.jobTargetRef.template.spec.containers[0].command: a local ScaledJob runs this "
                    "command as one job; it is missing (an image alone cannot run without a cluster)"
                )
            settings = local_job_settings(sj)
            env = resolve_env(sj, self.resources)
            scalers = build_scalers(
                sj, self.resources, env, env_secrets=env.secret_values, timeout=self.options.scaler_timeout
            )
            runner = JobRunner(
                sj.metadata.name,
                container.command,
                container.args or (),
                env=env,
                working_dir=container.working_dir,
                termination_grace_period=float(sj.spec.job_target_ref.template.spec.termination_grace_period_seconds),
                output=self.options.output,
                successful_jobs_history_limit=sj.spec.successful_jobs_history_limit,
                failed_jobs_history_limit=sj.spec.failed_jobs_history_limit,
                backoff_limit=settings.backoff_limit,
                active_deadline_seconds=settings.active_deadline_seconds,
                ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
                retry_backoff=self.options.job_backoff,
                on_event=self._event_sink(ref),
                extra_env={RUN_ID_ENV: self.run_id},
            )
        except EbbError as exc:
            self._problem(ref, exc)
            return None
        if settings.cluster_only:
            self.observer.event(
                ref,
                ScalingEvent(
                    "IgnoredLocally",
                    "these job template fields only matter on a cluster and do nothing under ebb run: "
                    + ", ".join(settings.cluster_only),
                ),
                self.options.clock(),
            )
        strategy = sj.spec.scaling_strategy
        self.runners[ref] = runner
        return ScaledJobLoop(
            ref,
            scalers,
            runner,
            polling_interval=float(sj.spec.polling_interval),
            min_replicas=sj.spec.min_replica_count,
            max_replicas=sj.spec.max_replica_count,
            strategy=JobStrategy(
                strategy=strategy.strategy,
                custom_scaling_queue_length_deduction=strategy.custom_scaling_queue_length_deduction,
                custom_scaling_running_job_percentage=strategy.custom_scaling_running_job_percentage,
                multiple_scalers_calculation=strategy.multiple_scalers_calculation,
            ),
            observer=self.observer,
            paused=pause_state(sj.metadata.annotations, str(ref)).paused,
            start_offset=offset,
            clock=self.options.clock,
        )

    async def start(self) -> None:
        """Build everything, bring each process group to its starting size, and start the loops."""
        for error in self.loaded.errors:
            ref = ObjectRef("manifest", "", getattr(error, "obj", "") or "?")
            self.observer.problem(ref, str(error), self.options.clock())
        self.state.report_load_problems()
        self._build_targets()
        scaled = self.resources.scaled_objects()
        jobs = self.resources.scaled_jobs()
        count = max(1, len(scaled) + len(jobs))
        for i, so in enumerate(scaled):
            offset = self._offset(i, count, so.spec.polling_interval)
            loop = self._guarded(so, functools.partial(self._build_scaled_object, so, offset))
            if loop is not None:
                self.loops[loop.ref] = loop
                self._group_owner[(so.metadata.namespace, so.spec.scale_target_ref.name)] = loop.ref
        for j, sj in enumerate(jobs):
            offset = self._offset(len(scaled) + j, count, sj.spec.polling_interval)
            job_loop = self._guarded(sj, functools.partial(self._build_scaled_job, sj, offset))
            if job_loop is not None:
                self.job_loops[job_loop.ref] = job_loop
        await self._stop_leftovers()
        for extension in self.extensions:
            extension.build(self)
        await self._initial_replicas()
        freeze_heap()
        intervals = [loop.polling_interval for loop in self.loops.values()]
        intervals += [loop.polling_interval for loop in self.job_loops.values()]
        if intervals:
            self._tasks.append(asyncio.create_task(refreeze_after(max(intervals) + 1.0)))
        for loop in self.loops.values():
            self._spawn(loop.ref, loop.run)
        for job_loop in self.job_loops.values():
            self._spawn(job_loop.ref, job_loop.run)
        self._tasks.append(asyncio.create_task(self.state.run_flusher()))
        for extension in self.extensions:
            await extension.start()

    async def _stop_leftovers(self) -> None:
        """Stop workers a previous ebb with this state left running (it was killed), before starting ours."""
        previous = self.state.previous_run
        if previous is None:
            return
        grace = min(self.max_grace(), LEFTOVER_GRACE)
        try:
            stopped = await asyncio.to_thread(stop_leftovers, previous, grace)
        except Exception as exc:  # psutil on an odd platform: never a reason not to start
            self._problem(RUNTIME_REF, f"cannot look for workers a previous ebb left: {exc}")
            return
        if stopped:
            self.observer.event(
                RUNTIME_REF,
                ScalingEvent(
                    "LeftoverWorkersStopped",
                    f"stopped {len(stopped)} process(es) left running by a previous ebb (pid {previous.pid}) "
                    f"with this state: {', '.join(map(str, sorted(stopped)))}",
                    "Warning",
                ),
                self.options.clock(),
            )

    def _guarded(self, obj: ScaledObject | ScaledJob, build: Callable[[], L | None]) -> L | None:
        """Build one object's loop; an unexpected failure is that object's problem, not the runtime's."""
        try:
            return build()
        except Exception as exc:
            self._problem(object_ref(obj), f"cannot start scaling ({type(exc).__name__}: {exc})")
            return None

    @staticmethod
    def _offset(index: int, count: int, interval: float) -> float:
        return spread_offset(index, count, interval)

    async def _initial_replicas(self) -> None:
        """Resume where the last run stopped (no flapping after a restart); unscaled groups run `replicas`."""
        scaled_targets = {(loop.ref.namespace, loop_target_name(loop)): loop for loop in self.loops.values()}
        for (ns, name), target in self.targets.items():
            pg = self.resources.get(ProcessGroup, ns, name)
            configured = pg.spec.replicas if pg is not None else None
            loop = scaled_targets.get((ns, name))
            if loop is None:
                initial = 1 if configured is None else configured
            else:
                saved = self.state.replicas(loop.ref.key)
                initial = saved if saved is not None else (configured or 0)
            try:
                await target.set_replicas(initial)
            except EbbError as exc:
                self._problem(ObjectRef("ProcessGroup", ns, name), exc)

    def _spawn(self, ref: ObjectRef, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(ref, run), name=str(ref)))

    async def _supervise(self, ref: ObjectRef, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A loop that dies of a bug is reported and restarted; it never takes the others down."""
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._problem(ref, f"scaling loop failed ({type(exc).__name__}: {exc}); restarting in 5s")
                await asyncio.sleep(5.0)

    # --- running and stopping -------------------------------------------------------------------------

    async def run(self) -> None:
        """Start, then wait until cancelled; always stops gracefully."""
        try:
            await self.start()
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    async def stop(self) -> None:
        """Cancel loops, close scalers, stop every worker gracefully (SIGTERM, grace, SIGKILL), save state.

        Every step is bounded: loops get LOOP_STOP_TIMEOUT (cancelled again if one swallows its
        cancellation), scalers their close timeout, workers their grace period and then SIGKILL.
        """
        for extension in self.extensions:
            try:
                await extension.stop()
            except Exception as exc:
                self.observer.problem(ObjectRef("runtime", "", "ebb"), f"while stopping: {exc}", time.time())
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks, LOOP_STOP_TIMEOUT)
        closers = [t.close() for t in self.targets.values()] + [r.close() for r in self.runners.values()]
        scalers = [s for loop in self.loops.values() for s in loop.scalers]
        scalers += [s for loop in self.job_loops.values() for s in loop.scalers]
        # Workers and scalers close side by side: a slow scaler close never delays the workers' SIGTERM.
        results = await asyncio.gather(close_scalers(scalers), *closers, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self.observer.problem(RUNTIME_REF, f"while stopping: {result}", time.time())
        self.state.clear_children()
        self.state.flush()


async def cancel_and_wait(tasks: list[asyncio.Task[None]], within: float) -> list[asyncio.Task[None]]:
    """Cancel `tasks` and wait at most `within` seconds for them; the ones still running are returned.

    A task that swallowed its cancellation (asyncio.wait_for in Python 3.11 can, when the awaited operation
    completes at the same moment) is cancelled again each round.
    """
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + within
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(remaining, 0.5))
    return list(pending)


def loop_target_name(loop: ScaledObjectLoop) -> str:
    name = getattr(loop.target, "name", "")
    return name if isinstance(name, str) else ""
