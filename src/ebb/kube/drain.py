"""Busy-aware scale-in of a Kubernetes target: probe its pods, mark them with pod-deletion-cost, hold back.

The ReplicaSet controller picks the pods to delete on a scale-in by rank (kubernetes
pkg/controller/replicaset `getPodsToDelete`, ranked by `controller.ActivePodsWithRanks`): unscheduled before
scheduled, Pending before Unknown before Running, not ready before ready, then **lower
`controller.kubernetes.io/pod-deletion-cost` first**, then pods doubled up on a node, newer readiness, more
restarts, newer creation. ebb probes each pod (ebb.dev/busy-probe) just before a scale-in and gives idle pods a
low cost and busy ones a high cost, so that among ready pods the idle ones go first.

Direct mode also holds the scale-in back: it writes only as many removals as there are idle pods, and the rest
once more pods are idle or ebb.dev/max-drain-seconds has passed. HPA mode cannot hold the HPA back: ebb
predicts its decision from the same core and keeps the costs fresh while a scale-in is pending (best effort).
A StatefulSet ignores pod-deletion-cost: it always removes the highest ordinal.

With ebb.dev/drain-handshake the probe-then-remove race is closed: before a scale-in ebb annotates the pods it
chose `ebb.dev/draining: "true"`; each reads its annotations through a Downward API file, stops taking new work,
and once its work is done its busy probe answers `{"inFlight": 0, "draining": true}`. Only pods that confirmed
so are removed: they get the lowest cost of all (CONFIRMED_COST), and /scale goes down by their number (direct
mode). A StatefulSet's chosen pods are its highest ordinals (the ones it will remove).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from lightkube.types import PatchType

from ebb.errors import EbbError
from ebb.kube.client import API_ERRORS, POD, AsyncClient, api_message, to_dict
from ebb.scalers.base import MetricSpec
from ebb.scaling.hpa import HorizontalAutoscaler, MetricSample
from ebb.scaling.types import LifecycleState
from ebb.spec.drain import DRAINING_POD_ANNOTATION, PodBusyProbe
from ebb.targets.busy import BusyState, describe_duration, probe_http, unknown

log = logging.getLogger("ebb.operator")

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: ebb's own note on a pod whose deletion cost it set ("idle" or "busy"): it only ever clears costs it set.
MARK_ANNOTATION = "ebb.dev/deletion-cost"
#: Lower goes first. A pod without the annotation counts 0: between idle and busy, so an unprobed pod is neither.
#: A pod whose probe failed (unknown) is kept longest, as ebb.targets.busy.removal_order does locally.
IDLE_COST = -100
BUSY_COST = 100
UNKNOWN_COST = 200
#: A pod that confirmed the drain handshake (asked to drain, says draining and idle): removed before any other.
CONFIRMED_COST = -200
#: A pod asked to drain that has not confirmed yet: below every pod not asked, so that when the HPA removes pods
#: before they confirm, the ReplicaSet takes the ones ebb chose (seen on v1.28.0: with the busy cost it removed a
#: busy pod that was never asked and kept the one asked to drain).
ASKED_COST = -150
PROBE_TIMEOUT = 2.0
#: A state that lasts (busy pods waited for) is said again, with its durations brought up to date, at most this
#: often: each Event is a new object (seen on a real cluster: one per poll, every 2 s, while pods were busy).
REPEAT_EVENT_SECONDS = 60.0

#: What listing a target's pods may raise: the API, or a selector ebb cannot read (ValueError, TargetError).
_LIST_ERRORS: tuple[type[Exception], ...] = (*API_ERRORS, ValueError, EbbError)

EventSink = Callable[[str, str, Literal["Normal", "Warning"]], None]


@dataclass(frozen=True)
class PodState:
    """One pod as probed (a failed probe is `unknown`, which counts as busy), with the cost and mark it carries."""

    name: str
    state: BusyState
    cost: str | None = None
    mark: str | None = None
    ip: str | None = None
    #: ebb asked this pod to drain (it carries ebb.dev/draining: "true").
    asked: bool = False

    @property
    def busy(self) -> bool:
        return self.state.busy

    @property
    def confirmed(self) -> bool:
        """Asked to drain, and says it is draining with nothing in flight: safe to remove."""
        return self.asked and self.state.idle and self.state.draining

    @property
    def ordinal(self) -> int:
        """A StatefulSet pod's ordinal (the name's numeric suffix); -1 for a name without one."""
        head, _, tail = self.name.rpartition("-")
        return int(tail) if head and tail.isdigit() else -1

    @property
    def wanted(self) -> tuple[str, str]:
        """The (cost, mark) this pod should carry."""
        if self.state.kind == "idle":
            return str(IDLE_COST), "idle"
        if self.state.kind == "busy":
            return str(BUSY_COST), "busy"
        return str(UNKNOWN_COST), "unknown"


# --- label selectors --------------------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*"
)


@dataclass(frozen=True)
class Selector:
    """A label selector as /scale's status.selector writes it ("app=web,tier in (a,b),!canary")."""

    text: str
    requirements: tuple[tuple[str, str, frozenset[str]], ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, op, values in self.requirements:
            present = key in labels
            if op == "exists" and not present:
                return False
            if op == "!exists" and present:
                return False
            if op == "in" and (not present or labels[key] not in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
        return True


def parse_selector(text: str) -> Selector:
    """Parse a label selector string. Raises ValueError for one Kubernetes would refuse too."""
    parts = [p for p in re.split(r",(?![^()]*\))", text) if p.strip()]
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in parts:
        m = _REQUIREMENT.fullmatch(part)
        if m is None:
            raise ValueError(f"cannot read the label selector {text!r} at {part.strip()!r}")
        key = m["key"]
        if m["neg"]:
            if m["op"] or m["setop"]:
                raise ValueError(f"cannot read the label selector {text!r} at {part.strip()!r}")
            requirements.append((key, "!exists", frozenset()))
        elif m["op"] in ("=", "=="):
            requirements.append((key, "in", frozenset({m["value"]})))
        elif m["op"] == "!=":
            requirements.append((key, "notin", frozenset({m["value"]})))
        elif m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append((key, m["setop"], values))
        else:
            requirements.append((key, "exists", frozenset()))
    return Selector(text, tuple(requirements))


def selector_text(label_selector: Mapping[str, Any]) -> str:
    """A metav1.LabelSelector (a workload's spec.selector) as the string /scale would report."""
    parts = [f"{k}={v}" for k, v in sorted((label_selector.get("matchLabels") or {}).items())]
    for expr in label_selector.get("matchExpressions") or ():
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# --- HPA mode: what the HPA is about to do ------------------------------------------------------------


def predict_hpa_replicas(
    specs: Sequence[MetricSpec],
    metric_values: Mapping[str, float],
    current: int,
    min_replicas: int,
    max_replicas: int,
    now: float,
    ready: int | None = None,
) -> int | None:
    """The replica count the HPA's metrics propose (before its stabilization window), from the values ebb serves
    it, by the same core (scaling/hpa.py); None when ebb cannot tell (a metric without a value, cpu/memory only).

    Before stabilization on purpose: the HPA removes pods once its window lets it, at a sync ebb does not see, so
    the costs must be right from the moment the proposal drops, not when ebb guesses the window ends.
    """
    samples = [
        MetricSample(metric_values.get(s.name), s.target, s.metric_type, s.name)
        for s in specs
        if s.source != "Resource"
    ]
    if not samples or any(s.value is None for s in samples) or current <= 0:
        return None
    hpa = HorizontalAutoscaler(max(1, min_replicas), max_replicas, state=LifecycleState())
    proposed = hpa.desired(samples, current, now, ready).metric_desired_replicas
    if proposed is None:
        return None
    return max(max(1, min_replicas), min(max_replicas, proposed))


# --- the pods ---------------------------------------------------------------------------------------


@dataclass
class PodDrainer:
    """The busy probe of one ScaledObject's target: which pods are busy, their deletion costs, held scale-ins."""

    client: AsyncClient
    namespace: str
    label: str
    probe: PodBusyProbe
    #: The target's pod selector (from /scale status.selector, else the workload's spec.selector).
    selector: Callable[[], Awaitable[str]]
    clock: Callable[[], float] = time.time
    on_event: EventSink | None = None
    #: The target is a StatefulSet: it removes its highest ordinals whatever the costs say.
    statefulset: bool = False
    timeout: float = PROBE_TIMEOUT
    #: When each pod was first seen busy, by name (for "longest 4 min").
    busy_since: dict[str, float] = field(default_factory=dict)
    #: When the scale-in being held back started (direct mode).
    held_since: float | None = None
    #: How many pods were busy at the last survey (None before the first).
    last_busy: int | None = None
    #: Whether pods may carry costs ebb set (True at first: a previous operator may have left some).
    marked: bool = True
    #: What the last Event said (its durations left out) and when.
    _said: str | None = None
    _said_exact: str | None = None
    _said_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _event(self, reason: str, message: str, type_: Literal["Normal", "Warning"] = "Normal") -> None:
        """Post an Event unless the last one said the same: word for word (said once), or but for its durations
        ("longest 4 s", said again with them brought up to date once REPEAT_EVENT_SECONDS have passed)."""
        said = _DURATION.sub("", f"{reason}: {message}")
        now = self.clock()
        if said == self._said and (message == self._said_exact or now - self._said_at < REPEAT_EVENT_SECONDS):
            return
        self._said, self._said_exact, self._said_at = said, message, now
        if self.on_event is not None:
            self.on_event(reason, message, type_)

    async def pods(self) -> list[dict[str, Any]]:
        """The target's live pods: matching its selector, not being deleted, with an IP."""
        text = await self.selector()
        selector = parse_selector(text)
        found = []
        async for pod in self.client.list(POD, namespace=self.namespace, labels=_labels_param(selector)):
            body = to_dict(pod)
            meta = body.get("metadata") or {}
            if meta.get("deletionTimestamp") or not selector.matches(meta.get("labels") or {}):
                continue
            found.append(body)
        return found

    async def survey(self) -> list[PodState]:
        """Probe every live pod at once. A pod without an IP yet, or whose probe fails, counts as busy."""
        pods = await self.pods()

        async with aiohttp.ClientSession() as session:

            async def one(pod: dict[str, Any]) -> PodState:
                meta = pod.get("metadata") or {}
                annotations = meta.get("annotations") or {}
                ip = (pod.get("status") or {}).get("podIP")
                if ip:
                    state = await probe_http(self.probe.url(str(ip)), self.timeout, session)
                else:
                    state = unknown("no pod IP yet")
                return PodState(
                    str(meta.get("name")),
                    state,
                    annotations.get(DELETION_COST_ANNOTATION),
                    annotations.get(MARK_ANNOTATION),
                    str(ip) if ip else None,
                    annotations.get(DRAINING_POD_ANNOTATION) == "true",
                )

            states = list(await asyncio.gather(*(one(p) for p in pods)))
        now = self.clock()
        names = {s.name for s in states}
        for s in states:
            if s.busy:
                self.busy_since.setdefault(s.name, now)
            else:
                self.busy_since.pop(s.name, None)
        for gone in set(self.busy_since) - names:
            del self.busy_since[gone]
        self.last_busy = sum(s.busy for s in states)
        return states

    async def _patch(self, name: str, annotations: dict[str, str | None]) -> bool:
        try:
            await self.client.patch(
                POD,
                name,
                {"metadata": {"annotations": annotations}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        except API_ERRORS as exc:  # gone meanwhile, or no RBAC for pods/patch: said, never fatal
            log.warning("%s: cannot set the deletion cost of pod %s: %s", self.label, name, api_message(exc))
            return False
        return True

    async def mark(self, states: Sequence[PodState]) -> None:
        """Idle pods get IDLE_COST, busy ones BUSY_COST; only pods whose cost changes are patched."""
        self.marked = True
        writes = []
        for s in states:
            cost, mark = s.wanted
            if s.cost != cost or s.mark != mark:
                writes.append(self._patch(s.name, {DELETION_COST_ANNOTATION: cost, MARK_ANNOTATION: mark}))
        await asyncio.gather(*writes)

    async def _recheck(self, states: list[PodState]) -> list[PodState]:
        """Ask the idle pods once more after marking (a pod may have taken work while the others were probed and
        patched): one that is busy now is marked busy, so the window before /scale is written is one probe."""
        async with aiohttp.ClientSession() as session:

            async def again(s: PodState) -> PodState:
                if s.busy or s.ip is None:
                    return s
                state = await probe_http(self.probe.url(s.ip), self.timeout, session)
                if state.busy:
                    now = PodState(s.name, state, str(IDLE_COST), "idle", s.ip)
                    await self.mark([now])
                    return now
                return s

            return list(await asyncio.gather(*(again(s) for s in states)))

    async def clear(self) -> None:
        async with self._lock:
            await self._clear()

    async def _clear(self) -> None:
        """Remove the deletion costs ebb set (only those: a pod's own cost stays)."""
        self.held_since = None
        self._said = None
        self.marked = False
        try:
            pods = await self.pods()
        except _LIST_ERRORS as exc:
            log.debug("%s: cannot list pods to clear deletion costs: %s", self.label, exc)
            return
        writes = [
            self._patch(
                str(p["metadata"]["name"]),
                {DELETION_COST_ANNOTATION: None, MARK_ANNOTATION: None, DRAINING_POD_ANNOTATION: None},
            )
            for p in pods
            if {MARK_ANNOTATION, DRAINING_POD_ANNOTATION} & set((p.get("metadata") or {}).get("annotations") or {})
        ]
        await asyncio.gather(*writes)

    def _longest(self, now: float) -> str:
        return describe_duration(max(now - min(self.busy_since.values()), 0.0)) if self.busy_since else "0 s"

    async def plan_scale_in(self, current: int, desired: int) -> int:
        async with self._lock:
            return await self._plan_scale_in(current, desired)

    async def _plan_scale_in(self, current: int, desired: int) -> int:
        if self.probe.handshake:
            return await self._plan_handshake(current, desired, hold=True)
        return await self._plan_by_probe(current, desired)

    def _choose(self, states: Sequence[PodState], removing: int) -> list[PodState]:
        """The pods to ask to drain: a StatefulSet's highest ordinals; otherwise pods already asked (they stopped
        taking work), then idle ones, then busy ones with the least in flight, then those that did not answer."""
        if removing <= 0:
            return []
        if self.statefulset:
            return sorted(states, key=lambda s: -s.ordinal)[:removing]
        rank = {"idle": 0, "busy": 1, "unknown": 2}

        def key(s: PodState) -> tuple[int, int, int, int]:
            return (not s.confirmed, not s.asked, rank[s.state.kind], s.state.in_flight or 0)

        return sorted(states, key=key)[:removing]

    async def _handshake(self, states: Sequence[PodState], chosen: Sequence[PodState]) -> None:
        """Ask the chosen pods to drain and stop asking the others; costs: confirmed pods lowest of all."""
        self.marked = True
        picked = {s.name for s in chosen}
        writes = []
        for s in states:
            if s.name in picked:
                cost, mark = (str(CONFIRMED_COST), "drained") if s.confirmed else (str(ASKED_COST), "asked")
            else:
                cost, mark = s.wanted
            patch: dict[str, str | None] = {}
            if s.cost != cost or s.mark != mark:
                patch |= {DELETION_COST_ANNOTATION: cost, MARK_ANNOTATION: mark}
            if (s.name in picked) != s.asked:
                patch[DRAINING_POD_ANNOTATION] = "true" if s.name in picked else None
            if patch:
                writes.append(self._patch(s.name, patch))
        await asyncio.gather(*writes)

    def _ready(self, chosen: Sequence[PodState]) -> int:
        """How many of the chosen pods may go now: the confirmed ones (a StatefulSet's: from the top down)."""
        if not self.statefulset:
            return sum(s.confirmed for s in chosen)
        ready = 0
        for s in chosen:  # highest ordinal first
            if not s.confirmed:
                break
            ready += 1
        return ready

    async def _plan_handshake(self, current: int, desired: int, *, hold: bool) -> int:
        """The drain handshake before /scale goes from `current` to `desired`: ask, and remove only the confirmed
        (until max-drain-seconds has passed, when holding). Returns how far /scale may go now."""
        now = self.clock()
        try:
            states = await self.survey()
        except _LIST_ERRORS as exc:
            self._event("BusyProbeFailed", f"cannot list the pods of {self.label}: {exc}; scaling in blind", "Warning")
            return desired
        removing = len(states) - desired
        chosen = self._choose(states, removing)
        await self._handshake(states, chosen)
        ready = self._ready(chosen)
        head = f"scaling {current}→{desired}" if hold else f"HPA expected to scale {current}→{desired}"
        if removing <= ready:
            self.held_since = None
            done = "removed" if hold else "marked for removal"
            self._event("BusyAwareScaleIn", f"{head}: {max(removing, 0)} pods drained (confirmed idle) and {done}")
            return desired
        waiting = [s for s in chosen if not s.confirmed]
        unreadable = [s for s in waiting if not s.state.known]
        detail = (
            f"; {len(unreadable)} did not answer the busy probe (counted as busy; {unreadable[0].name}: "
            f"{unreadable[0].state.reason})"
            if unreadable
            else ""
        )
        busy = [s for s in waiting if s.busy]
        waited_most = max((now - self.busy_since.get(s.name, now) for s in busy), default=0.0)
        longest = describe_duration(max(waited_most, 0.0))  # never "-0 s": now was read before the survey
        if not hold:
            self._event(
                "BusyPodsAtRisk",
                f"{head}: {ready} of {removing} pods confirmed drained; asked {len(waiting)} to stop taking work "
                f"({len(busy)} busy, longest {longest}); the HPA does not wait: unconfirmed pods may be removed "
                f"busy (ebb.dev/scaling: direct holds them back){detail}",
                "Warning",
            )
            return desired
        if self.held_since is None:
            self.held_since = now
        waited = now - self.held_since
        if waited >= self.probe.max_drain_seconds:
            self.held_since = None
            self._event(
                "BusyPodsRemoved",
                f"{head}: waited {describe_duration(waited)} "
                f"(ebb.dev/max-drain-seconds {self.probe.max_drain_seconds:g}) for pods to drain: "
                f"{ready} drained and {removing - ready} not yet drained removed{detail}",
                "Warning",
            )
            return desired
        self._event(
            "WaitingForBusyPods",
            f"{head}: {ready} drained pods removed, waiting for {len(waiting)} asked to drain "
            f"({len(busy)} busy, longest {longest}){detail}",
        )
        return min(max(desired, current - ready), current)

    async def _plan_by_probe(self, current: int, desired: int) -> int:
        """Direct mode, before /scale goes from `current` down to `desired`: mark the pods and return how far to go
        now, never below `desired`: only as many pods as are idle, until max-drain-seconds has passed."""
        try:
            states = await self.survey()
        except _LIST_ERRORS as exc:
            self._event("BusyProbeFailed", f"cannot list the pods of {self.label}: {exc}; scaling in blind", "Warning")
            return desired
        # After the survey, which stamps busy_since: "longest" is never negative ("-0 s" on a real cluster).
        now = self.clock()
        await self.mark(states)
        states = await self._recheck(states)
        idle = [s for s in states if not s.busy]
        busy = [s for s in states if s.busy]
        removing = len(states) - desired
        head = f"scaling {current}→{desired}"
        if removing <= len(idle):
            self.held_since = None
            self._event("BusyAwareScaleIn", f"{head}: {max(removing, 0)} idle pods marked for removal")
            return desired
        if self.held_since is None:
            self.held_since = now
        waited = now - self.held_since
        unreadable = [s for s in busy if not s.state.known]
        detail = (
            f"; {len(unreadable)} did not answer the busy probe (counted as busy; {unreadable[0].name}: "
            f"{unreadable[0].state.reason})"
            if unreadable
            else ""
        )
        if waited >= self.probe.max_drain_seconds:
            self.held_since = None
            extra = removing - len(idle)
            self._event(
                "BusyPodsRemoved",
                f"{head}: waited {describe_duration(waited)} "
                f"(ebb.dev/max-drain-seconds {self.probe.max_drain_seconds:g}) "
                f"for busy pods: {len(idle)} idle and {extra} busy pods marked for removal{detail}",
                "Warning",
            )
            return desired
        step = max(desired, len(states) - len(idle))
        self._event(
            "WaitingForBusyPods",
            f"{head}: {len(idle)} idle pods marked for removal, waiting for {removing - len(idle)} of "
            f"{len(busy)} busy pods (longest {self._longest(now)}){detail}",
        )
        return min(step, current)

    async def expect_scale_in(self, current: int, predicted: int) -> None:
        async with self._lock:
            await self._expect_scale_in(current, predicted)

    async def _expect_scale_in(self, current: int, predicted: int) -> None:
        """HPA mode: the HPA is about to go from `current` to `predicted`; mark the pods for it (it cannot wait)."""
        if self.probe.handshake:
            await self._plan_handshake(current, predicted, hold=False)
            return
        try:
            states = await self.survey()
        except _LIST_ERRORS as exc:
            self._event("BusyProbeFailed", f"cannot list the pods of {self.label}: {exc}", "Warning")
            return
        await self.mark(states)
        idle = sum(not s.busy for s in states)
        removing = len(states) - predicted
        head = f"HPA expected to scale {current}→{predicted}"
        if removing <= idle:
            self._event("BusyAwareScaleIn", f"{head}: {max(removing, 0)} idle pods marked for removal")
        else:
            self._event(
                "BusyPodsAtRisk",
                f"{head}: only {idle} idle pods; {removing - idle} busy pods may be removed (the HPA does not wait:"
                " use scaling mode direct, ebb.dev/scaling: direct, to hold them back)",
                "Warning",
            )

    async def busy_replicas(self) -> int | None:
        """How many pods are busy now (for ebb.dev/cooldown-from: last-activity); None if the pods cannot be read."""
        with contextlib.suppress(*_LIST_ERRORS):
            states = await self.survey()
            return sum(s.busy for s in states)
        return None


#: Durations in an Event's message ("longest 4 min", "waited 30 s"), left out when comparing two messages.
_DURATION = re.compile(r"-?\d+(?:\.\d+)? (?:s|min|h)\b")


def _labels_param(selector: Selector) -> dict[str, Any]:
    """The equality part of the selector for lightkube's `labels=` (the API server filters; ebb checks again)."""
    out: dict[str, Any] = {}
    for key, op, values in selector.requirements:
        if op == "in" and len(values) == 1:
            out[key] = next(iter(values))
    return out
