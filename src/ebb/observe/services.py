"""Wires `ebb run`'s observers and background services: metrics, event log, history, web app, CloudEvents."""

from __future__ import annotations

import asyncio
import contextlib
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
from ebb.observe.history import DEFAULT_RETENTION, HistoryObserver, HistoryStore
from ebb.observe.keda_names import COUNTED_RESOURCES
from ebb.observe.metrics import MetricsObserver
from ebb.runtime.observer import RUNTIME_REF, Observer, Observers
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
        retention: float = DEFAULT_RETENTION,
        cloudevent_sources: Sequence[AnyCloudEventSource] = (),
        cluster_name: str = "ebb-local",
        announce: Callable[[str], None] | None = None,
        pricing: Pricing | None = None,
        hpa_series: bool = False,
    ) -> None:
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
            self.store = HistoryStore(state_dir / HISTORY_FILE, retention=retention)
        elif self.dashboard or memory_history:
            self.store = HistoryStore(None, retention=retention)  # no file: the same store, in memory
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
        self._tasks: list[asyncio.Task[None]] = []
        self.served: AppServer | None = None

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
        return observers

    async def start(self) -> None:
        if self.history is not None:
            self._tasks.append(asyncio.create_task(self.history.run()))
        if self.cloudevent_hub is not None:
            await self.cloudevent_hub.start()
        if self.metrics_port:
            app = build_app(
                registry=self.metrics.registry if self.metrics is not None else None,
                history=self.store,
                dashboard=self.dashboard,
                pricing=self.pricing,
                forecasts=self.forecasts,
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
        tasks, self._tasks = self._tasks, []
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
