"""Runs the demo: writes a job table and a manifest, scales real workers with ebb's local runtime, and
shows queue depth and replicas live until the queue has drained and the workers are back at zero."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ebb.demo import jobs
from ebb.observe.console import ConsoleObserver
from ebb.observe.services import EVENTS_FILE, HISTORY_FILE, Services
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.runtime.observer import ObjectRef, Observer, Observers, PollRecord
from ebb.scaling.types import ScalingEvent
from ebb.spec.loader import load_files
from ebb.spec.models import ScaledObject
from ebb.targets.process import ProcessGroupTarget

BARS = " ▁▂▃▄▅▆▇█"
DEFAULT_STATE_DIR = Path(".ebb")


@dataclass(frozen=True)
class Plan:
    """The demo's script: when bursts of jobs arrive, how long a job takes, how the object scales."""

    bursts: tuple[tuple[float, int], ...]
    work_ms: tuple[int, int]
    max_replicas: int
    jobs_per_replica: int
    polling_interval: int
    cooldown: int
    scale_down_window: int
    grace: int
    give_up_after: float


FULL = Plan(
    bursts=((2.4, 60), (30.7, 30), (52.3, 120)),
    work_ms=(300, 900),
    max_replicas=8,
    jobs_per_replica=5,
    polling_interval=1,
    cooldown=10,
    scale_down_window=8,
    grace=10,
    give_up_after=180,
)
QUICK = Plan(
    bursts=((1.4, 24), (6.6, 16)),
    work_ms=(100, 300),
    max_replicas=4,
    jobs_per_replica=4,
    polling_interval=1,
    cooldown=3,
    scale_down_window=2,
    grace=5,
    give_up_after=90,
)

MANIFEST = """\
# Written by `ebb demo`. Run it yourself with: ebb run {manifest}
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata:
  name: demo-worker
spec:
  command: [{python}, "-m", "ebb.demo.worker", {db}]
  terminationGracePeriodSeconds: {grace}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: demo-worker
spec:
  scaleTargetRef:
    apiVersion: ebb.dev/v1alpha1
    kind: ProcessGroup
    name: demo-worker
  pollingInterval: {polling}
  cooldownPeriod: {cooldown}
  minReplicaCount: 0
  maxReplicaCount: {max_replicas}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies:
            - type: Pods
              value: 4
              periodSeconds: 2
        scaleDown:
          stabilizationWindowSeconds: {window}
          policies:
            - type: Percent
              value: 50
              periodSeconds: 2
  triggers:
    - type: sqlite
      name: backlog
      metadata:
        databasePath: {db}
        query: "{query}"
        targetQueryValue: "{per_replica}"
"""


def write_manifest(directory: Path, plan: Plan) -> tuple[Path, Path]:
    db = directory / "jobs.db"
    manifest = directory / "demo.yaml"
    jobs.create(db)
    manifest.write_text(
        MANIFEST.format(
            manifest=manifest,
            python=_quote(sys.executable),
            db=_quote(str(db)),
            grace=plan.grace,
            polling=plan.polling_interval,
            cooldown=plan.cooldown,
            max_replicas=plan.max_replicas,
            window=plan.scale_down_window,
            query=jobs.BACKLOG_QUERY,
            per_replica=plan.jobs_per_replica,
        )
    )
    return db, manifest


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Tracker(Observer):
    """Everything the live view and the summary need, sampled from the runtime and the job table."""

    started: float = field(default_factory=time.time)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    replicas: deque[int] = field(default_factory=lambda: deque(maxlen=60))
    backlog: deque[int] = field(default_factory=lambda: deque(maxlen=60))
    desired: int = 0
    running: int = 0
    peak: int = 0
    replica_seconds: float = 0.0
    first_worker_at: float | None = None
    went_up: bool = False
    back_to_zero: bool = False
    counts: jobs.Counts | None = None

    def poll(self, record: PollRecord) -> None:
        self.desired = record.desired_replicas

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self.events.append(f"{now - self.started:5.1f}s  {event.reason}: {event.message}")

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        self.events.append(f"{now - self.started:5.1f}s  error: {message}")

    def sample(self, running: int, counts: jobs.Counts, dt: float) -> None:
        now = time.time()
        self.running = running
        self.counts = counts
        self.peak = max(self.peak, running)
        self.replica_seconds += running * dt
        if running > 0:
            self.went_up = True
            if self.first_worker_at is None and counts.first_created is not None:
                self.first_worker_at = now
        self.back_to_zero = self.went_up and running == 0 and self.desired == 0

    def tick_history(self) -> None:
        self.replicas.append(self.running)
        self.backlog.append(self.counts.backlog if self.counts else 0)


def _spark(values: deque[int], top: int) -> str:
    if not values:
        return ""
    top = max(top, 1)
    return "".join(BARS[min(len(BARS) - 1, round(v / top * (len(BARS) - 1)))] for v in values)


def render(tracker: Tracker, plan: Plan, total_jobs: int) -> Panel:
    c = tracker.counts
    stats = Table.grid(padding=(0, 3))
    for _ in range(6):
        stats.add_column(justify="right")
    stats.add_row("elapsed", "waiting", "in progress", "done", "desired", "running")
    stats.add_row(
        f"{time.time() - tracker.started:.0f}s",
        str(c.pending if c else 0),
        str(c.running if c else 0),
        f"{c.done if c else 0}/{total_jobs}",
        str(tracker.desired),
        f"[bold]{tracker.running}[/]",
    )
    chart = Table.grid(padding=(0, 1))
    chart.add_column(justify="right", style="dim")
    chart.add_column()
    chart.add_row("replicas", f"[green]{_spark(tracker.replicas, plan.max_replicas)}[/]")
    top_backlog = max(max(tracker.backlog, default=0), 1)
    chart.add_row(f"backlog (max {top_backlog})", f"[cyan]{_spark(tracker.backlog, top_backlog)}[/]")
    events = "\n".join(escape(e) for e in tracker.events) or "[dim]waiting for the first job...[/]"
    return Panel(
        Group(stats, "", chart, "", "[bold]scaling events[/]", events),
        title="ebb demo: a SQLite job queue, real worker processes, scaled 0 → N → 0",
        subtitle="last 60 s, one column per second",
    )


async def produce(db: Path, plan: Plan, rng: random.Random, started: float) -> None:
    conn = jobs.connect(db)
    try:
        for at, count in plan.bursts:
            await asyncio.sleep(max(0.0, started + at - time.time()))
            await asyncio.to_thread(jobs.enqueue, conn, count, plan.work_ms, rng)
    finally:
        conn.close()


async def demo_main(console: Console, plan: Plan, directory: Path, live: bool, state_dir: Path | None = None) -> int:
    db, manifest = write_manifest(directory, plan)
    log_path = directory / "workers.log"
    console.print(f"manifest: {manifest}\njob table: {db}\nworker output: {log_path}\n")
    loaded = load_files([manifest])
    if loaded.errors:  # the demo's own manifest: a bug if it happens
        for error in loaded.errors:
            console.print(f"[red]{escape(str(error))}[/]")
        return 1
    tracker = Tracker()
    total_jobs = sum(n for _, n in plan.bursts)
    # The same history and event log `ebb run` keeps, so that `ebb dashboard` and `ebb events` show the demo.
    services = Services(state_dir, metrics_port=0) if state_dir is not None else None
    first: Observer = ConsoleObserver(console) if not live else Observers()
    chain = services.observers(first, [*loaded.of(ScaledObject)]) if services else Observers([first])
    observers = Observers([tracker, chain])
    if services is not None:
        await services.start()
    with log_path.open("a", buffering=1) as log:

        def sink(name: str, line: str) -> None:
            log.write(f"{time.time() - tracker.started:7.2f} [{name}] {line}\n")

        runtime = LocalRuntime(loaded, observers, RuntimeOptions(state_path=None, output=sink))
        runner = asyncio.create_task(runtime.run())
        producer = asyncio.create_task(produce(db, plan, random.Random(7), tracker.started))
        conn = jobs.connect(db)
        target: ProcessGroupTarget | None = None
        ok = False
        try:
            with (
                Live(console=console, refresh_per_second=4, transient=False)
                if live
                else contextlib.nullcontext() as view
            ):
                last, last_tick, last_line = time.time(), 0.0, 0.0
                while time.time() - tracker.started < plan.give_up_after:
                    await asyncio.sleep(0.1)
                    if runner.done():
                        break
                    target = target or next(iter(runtime.targets.values()), None)
                    now = time.time()
                    counts = await asyncio.to_thread(jobs.counts, conn)
                    tracker.sample(target.ready_replicas() if target else 0, counts, now - last)
                    last = now
                    if now - last_tick >= 1.0:
                        tracker.tick_history()
                        last_tick = now
                    if view is not None:
                        view.update(render(tracker, plan, total_jobs))
                    elif now - last_line >= 5.0:
                        last_line = now
                        console.print(
                            f"[dim]{now - tracker.started:5.1f}s backlog {counts.backlog}, done {counts.done}/"
                            f"{total_jobs}, replicas {tracker.running} (desired {tracker.desired})[/]"
                        )
                    if producer.done() and counts.done == total_jobs and tracker.back_to_zero:
                        ok = True
                        break
        finally:
            producer.cancel()
            runner.cancel()
            await asyncio.gather(producer, runner, return_exceptions=True)
            counts = await asyncio.to_thread(jobs.counts, conn)
            conn.close()
            if services is not None:
                await services.stop()
    summarize(console, tracker, plan, counts, total_jobs, ok)
    if services is not None and state_dir is not None:
        console.print(
            f"history kept in {state_dir}: see it with [bold]ebb dashboard --history {state_dir / HISTORY_FILE}[/] "
            f"and [bold]ebb events --log {state_dir / EVENTS_FILE}[/]"
        )
    return 0 if ok else 1


def summarize(console: Console, tracker: Tracker, plan: Plan, counts: jobs.Counts, total: int, ok: bool) -> None:
    ended = time.time()
    table = Table(title="ebb demo: summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if counts.first_created is not None and tracker.first_worker_at is not None:
        table.add_row("first job -> first worker running", f"{tracker.first_worker_at - counts.first_created:.1f} s")
    if counts.first_created is not None and counts.first_started is not None:
        table.add_row("first job -> first job picked up", f"{counts.first_started - counts.first_created:.1f} s")
    table.add_row("peak replicas", f"{tracker.peak} (max {plan.max_replicas})")
    table.add_row("jobs done", f"{counts.done} of {total}")
    if counts.first_created is not None:
        span = ended - counts.first_created
        always_on = tracker.peak * span
        saved = 100 * (1 - tracker.replica_seconds / always_on) if always_on else 0.0
        table.add_row("replica-seconds used", f"{tracker.replica_seconds:.0f}")
        table.add_row(
            "running the peak all the time",
            f"{always_on:.0f} replica-seconds over {span:.0f} s (ebb used {100 - saved:.0f}% of that)",
        )
    table.add_row("result", "[green]scaled 0 → N → 0, queue drained[/]" if ok else "[red]did not finish in time[/]")
    console.print(table)


def run_demo(
    console: Console,
    *,
    quick: bool = False,
    directory: Path | None = None,
    live: bool = True,
    state_dir: Path | None = DEFAULT_STATE_DIR,
) -> int:
    """The demo's job table and manifest go to `directory` (default `<state_dir>/demo`, kept so that the
    manifest can be run again); its history and event log to `state_dir`, where `ebb dashboard` reads them."""
    plan = QUICK if quick else FULL
    use_live = live and console.is_terminal
    if directory is None:
        directory = (state_dir or DEFAULT_STATE_DIR) / "demo"
    if directory.exists():  # a fresh queue each time
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return asyncio.run(demo_main(console, plan, directory, use_live, state_dir))
