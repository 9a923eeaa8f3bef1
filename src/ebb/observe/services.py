"""Wires `ebb run`'s observers and background services: metrics, event log, history, web app, CloudEvents."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from ebb.errors import SpecError
from ebb.observe.catalog import object_info
from ebb.observe.cloudevents import CloudEventHub, CloudEventsObserver, build_hub
from ebb.observe.cost import Pricing
from ebb.observe.events import EventLog, EventLogObserver
from ebb.observe.forecasts import ForecastLog
from ebb.observe.history import DEFAULT_TIERS, HistoryObserver, HistoryStore, Tier
from ebb.observe.http_routes import RouteInfo, register_routes
from ebb.observe.keda_names import COUNTED_RESOURCES
from ebb.observe.metrics import MetricsObserver
from ebb.observe.prom_history import ReadBackError, restore
from ebb.runtime.observer import RUNTIME_REF, ObjectRef, Observer, Observers
from ebb.scaling.types import ScalingEvent
from ebb.spec.auth import DEFAULT_CLUSTER_OBJECT_NAMESPACE
from ebb.spec.models import AnyCloudEventSource, KubeObject, ScaledJob, ScaledObject
from ebb.web.server import DEFAULT_HOST, DEFAULT_PORT, AppServer, build_app, serve

HISTORY_FILE = "history.db"
EVENTS_FILE = "events.jsonl"


def counted_resources(objects: Iterable[KubeObject]) -> list[tuple[str, str]]:
    """(kind, namespace) of the loaded objects KEDA counts in keda_resource_registered_total besides the scaled
    ones: (Cluster)TriggerAuthentications and (Cluster)CloudEventSources; cluster-scoped ones in "default"."""
    return [(o.kind, o.namespace or "default") for o in objects if o.kind in COUNTED_RESOURCES]


class Services:
    """Builds the observers for a run, then starts and stops what runs beside the scaling loops."""

    def __init__(
        self,
        state_dir: Path,
        *,
        metrics_port: int = DEFAULT_PORT,
        metrics_host: str = DEFAULT_HOST,
        allowed_hosts: Sequence[str] = (),
        dashboard: bool = False,
        history: bool = True,
        memory_history: bool = False,
        retention: float | None = None,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        cloudevent_sources: Sequence[AnyCloudEventSource] = (),
        cluster_name: str = "ebb-local",
        announce: Callable[[str], None] | None = None,
        pricing: Pricing | None = None,
        hpa_series: bool = False,
        prometheus_address: str | None = None,
    ) -> None:
        """`prometheus_address`: read each object's history back from that Prometheus (what ebb exported there)
        when the object is first seen, where the history has no points of its own: a restarted or failed-over
        operator keeps it."""
        self.state_dir = state_dir
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.allowed_hosts = tuple(allowed_hosts)
        self.dashboard = dashboard and metrics_port != 0
        self.announce = announce
        self.pricing = pricing
        self.metrics = MetricsObserver(hpa_series=hpa_series) if metrics_port else None
        self.store: HistoryStore | None = None
        if history:
            self.store = HistoryStore(state_dir / HISTORY_FILE, retention=retention, tiers=tiers)
        elif self.dashboard or memory_history:
            self.store = HistoryStore(None, retention=retention, tiers=tiers)  # no file: the same store, in memory
        on_drop = None
        if self.metrics is not None:
            dropped = self.metrics.metrics.observer_dropped.labels("history")
            on_drop = dropped.inc
        self.forecasts = ForecastLog() if self.store is not None else None
        self.history = HistoryObserver(self.store, on_drop=on_drop) if self.store is not None else None
        self.event_log = EventLogObserver(EventLog(state_dir / EVENTS_FILE)) if history else None
        # CloudEventSources (from the files, or the --cloudevents-sink shortcut): one that cannot send is reported
        # in `cloudevent_errors` and the others go on.
        self.cloudevent_hub: CloudEventHub | None = None
        self.cloudevent_errors: list[SpecError] = []
        self.cloudevents: CloudEventsObserver | None = None
        if cloudevent_sources:
            self.cloudevent_hub, self.cloudevent_errors = build_hub(
                cloudevent_sources,
                cluster=cluster_name,
                keda_namespace=DEFAULT_CLUSTER_OBJECT_NAMESPACE,
                metrics=self.metrics.metrics if self.metrics is not None else None,
            )
            self.cloudevents = CloudEventsObserver(self.cloudevent_hub)
        #: The HTTP interceptor's routes (set when `ebb run` serves HTTP): per-route series in /metrics, /api/routes.
        self.http_routes: Callable[[], Iterable[RouteInfo]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.served: AppServer | None = None
        self.prometheus_address = prometheus_address if self.store is not None else None
        self._restored: set[str] = set()
        self._restores: set[asyncio.Task[None]] = set()
        #: The read-back of each object (key), done or under way: seeding a forecaster waits for it.
        self._restoring: dict[str, asyncio.Task[None]] = {}

    def observers(
        self,
        first: Observer,
        objects: Sequence[ScaledObject | ScaledJob],
        other_resources: Sequence[tuple[str, str]] = (),
    ) -> Observers:
        """`first` (the console) and every enabled observer; objects are registered for their metadata, and
        `other_resources` ((kind, namespace): TriggerAuthentications ...) are counted in
        keda_resource_registered_total."""
        infos = [object_info(o) for o in objects]
        if self.metrics is not None:
            for info in infos:
                self.metrics.register(info.ref, info.triggers, info.max_replicas)
            for kind, namespace in other_resources:
                self.metrics.resource_added(kind, namespace)
        if self.store is not None:
            self.store.register(infos)
        chain: list[Observer] = [first]
        for extra in (self.metrics, self.event_log, self.history, self.forecasts, self.cloudevents):
            if extra is not None:
                chain.append(extra)
        observers = Observers(chain)

        def write_problem(reason: str, message: str) -> None:
            # A failed write of the history or the event log is itself an event, for the outputs that work.
            kind: Literal["Normal", "Warning"] = "Normal" if reason.endswith("Recovered") else "Warning"
            observers.event(RUNTIME_REF, ScalingEvent(reason, message, kind), time.time())

        if self.history is not None:
            self.history.on_write_problem = write_problem
        if self.event_log is not None:
            self.event_log.on_write_problem = write_problem
        self._read_back([info.ref for info in infos], observers)
        return observers

    def _read_back(self, refs: Sequence[ObjectRef], observers: Observers) -> None:
        """Start reading back the history of objects seen for the first time (in the running loop, if any)."""
        if self.prometheus_address is None or self.store is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for ref in refs:
            if ref.key in self._restored:
                continue
            self._restored.add(ref.key)
            task = asyncio.create_task(self._restore(ref, observers))
            self._restores.add(task)
            self._restoring[ref.key] = task
            task.add_done_callback(self._restores.discard)

    async def _restore(self, ref: ObjectRef, observers: Observers) -> None:
        assert self.prometheus_address is not None and self.store is not None
        try:
            added = await restore(self.store, self.prometheus_address, ref, time.time())
        except (ReadBackError, sqlite3.Error, OSError) as exc:
            message = f"cannot read the history back from Prometheus: {exc}"
            observers.event(ref, ScalingEvent("HistoryReadBackFailed", message, "Warning"), time.time())
            return
        if added:
            self._say(f"{ref}: {added} history points read back from Prometheus at {self.prometheus_address}")

    async def history_steps(
        self, ref: ObjectRef, metric: str, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """One trigger's history on a grid of `step` seconds (`HistoryStore.trigger_steps`), once the object's
        read-back from Prometheus (if any) has finished: what ebb.dev/predictive seeds its forecaster from at
        start (runtime.predictive.HistorySource). Empty without a history store."""
        if self.store is None:
            return []
        task = self._restoring.get(ref.key)
        if task is not None and not task.done():
            await asyncio.wait({task})  # not cancelled with the caller: the read-back also fills the dashboard
        return await asyncio.to_thread(self.store.trigger_steps, ref.key, metric, start, end, step)

    async def wait_read_back(self) -> None:
        """Until every history read-back started so far has finished (for tests and an orderly stop)."""
        await asyncio.gather(*self._restores, return_exceptions=True)

    async def start(self) -> None:
        if self.history is not None:
            self._tasks.append(asyncio.create_task(self.history.run()))
        if self.cloudevent_hub is not None:
            await self.cloudevent_hub.start()
        if self.metrics_port:
            if self.metrics is not None and self.http_routes is not None:
                infos = self.http_routes
                register_routes(self.metrics.registry, lambda: (info.route for info in infos()))
            app = build_app(
                registry=self.metrics.registry if self.metrics is not None else None,
                history=self.store,
                dashboard=self.dashboard,
                pricing=self.pricing,
                forecasts=self.forecasts,
                routes=self.http_routes,
            )
            try:
                self.served = await serve(app, self.metrics_host, self.metrics_port, hosts=self.allowed_hosts)
            except OSError as exc:
                self._say(f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: {exc}")
                return
            url = self.served.bound_url
            page = f", dashboard on {url}/" if self.dashboard else ""
            self._say(f"metrics on {url}/metrics{page}")
            if not self.served.loopback:
                self._say(
                    f"warning: {self.metrics_host} is not a loopback address: anyone who can reach this machine "
                    "on that port reads object names, metric values and the event log"
                )

    def _say(self, text: str) -> None:
        if self.announce is not None:
            self.announce(text)

    async def stop(self) -> None:
        tasks, self._tasks = [*self._tasks, *self._restores], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cloudevent_hub is not None:
            await self.cloudevent_hub.stop()
        if self.served is not None:
            await self.served.stop()
            self.served = None
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
