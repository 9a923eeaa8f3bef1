"""`ebb run`: every ScaledObject and ScaledJob of the loaded manifests, scaling local processes.

One broken object is reported (through the observer) and skipped; every other object keeps scaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ebb.errors import EbbError, SpecError
from ebb.runtime.build import build_scalers, object_ref
from ebb.runtime.heap import freeze_heap, refreeze_after
from ebb.runtime.observer import ObjectRef, Observer
from ebb.runtime.scaled_job import ScaledJobLoop
from ebb.runtime.scaled_object import ScaledObjectLoop, close_scalers, spread_offset
from ebb.runtime.state import StateStore
from ebb.scalers.base import DEFAULT_TIMEOUT
from ebb.scaling.jobs import JobStrategy
from ebb.scaling.lifecycle import ScaledObjectDecider, pause_state
from ebb.spec.auth import ResolvedEnv, resolve_env
from ebb.spec.convert import object_policy
from ebb.spec.loader import LoadResult
from ebb.spec.models import ProcessGroup, ScaledJob, ScaledObject
from ebb.targets.base import OutputSink
from ebb.targets.jobs import JobRunner
from ebb.targets.process import ProcessGroupTarget

L = TypeVar("L", ScaledObjectLoop, ScaledJobLoop)

#: ebb's own annotation: poll an idle object (at zero or idle replicas) this often, in seconds.
IDLE_POLLING_ANNOTATION = "ebb.dev/idle-polling-interval"


@dataclass
class RuntimeOptions:
    state_path: Path | None = Path(".ebb/state.json")
    scaler_timeout: float = DEFAULT_TIMEOUT
    output: OutputSink | None = None
    #: ProcessGroup restart backoff (seconds): first delay, cap, and the run time that resets it.
    backoff: tuple[float, float, float] = (1.0, 60.0, 60.0)
    clock: Callable[[], float] = field(default=time.time)


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

    def __init__(self, loaded: LoadResult, observer: Observer, options: RuntimeOptions | None = None) -> None:
        self.loaded = loaded
        self.resources = loaded.resources
        self.observer = observer
        self.options = options or RuntimeOptions()
        self.state = StateStore(self.options.state_path)
        self.targets: dict[tuple[str, str], ProcessGroupTarget] = {}
        self.envs: dict[tuple[str, str], ResolvedEnv] = {}
        self.loops: dict[ObjectRef, ScaledObjectLoop] = {}
        self.job_loops: dict[ObjectRef, ScaledJobLoop] = {}
        self.runners: dict[ObjectRef, JobRunner] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- building -------------------------------------------------------------------------------------

    def _problem(self, ref: ObjectRef, error: Exception | str) -> None:
        if isinstance(error, SpecError):  # with the file and line of the field at fault, as `ebb check` says it
            error = self.loaded.locate(error, self.resources.lookup(ref.kind, ref.namespace, ref.name))
        self.observer.problem(ref, str(error), self.options.clock())

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
            )
        except EbbError as exc:
            self._problem(ref, exc)
            return None
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
        self._build_targets()
        scaled = self.resources.scaled_objects()
        jobs = self.resources.scaled_jobs()
        count = max(1, len(scaled) + len(jobs))
        for i, so in enumerate(scaled):
            offset = self._offset(i, count, so.spec.polling_interval)
            loop = self._guarded(so, functools.partial(self._build_scaled_object, so, offset))
            if loop is not None:
                self.loops[loop.ref] = loop
        for j, sj in enumerate(jobs):
            offset = self._offset(len(scaled) + j, count, sj.spec.polling_interval)
            job_loop = self._guarded(sj, functools.partial(self._build_scaled_job, sj, offset))
            if job_loop is not None:
                self.job_loops[job_loop.ref] = job_loop
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
        """Cancel loops, close scalers, stop every worker gracefully (SIGTERM, grace, SIGKILL), save state."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_scalers([s for loop in self.loops.values() for s in loop.scalers])
        await close_scalers([s for loop in self.job_loops.values() for s in loop.scalers])
        closers = [t.close() for t in self.targets.values()] + [r.close() for r in self.runners.values()]
        results = await asyncio.gather(*closers, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self.observer.problem(ObjectRef("runtime", "", "ebb"), f"while stopping: {result}", time.time())
        with contextlib.suppress(OSError):
            self.state.flush()


def loop_target_name(loop: ScaledObjectLoop) -> str:
    target = loop.target
    return target.name if isinstance(target, ProcessGroupTarget) else ""
