"""What a route's traffic did, for /metrics, the dashboard and Events: counters, a hold-time histogram and
cold starts.

The interceptor calls a few methods at fixed points of a request (in, held, hold over, upstream error, 504,
503); everything else (the Prometheus families, the JSON view, the Events) is read from here. A cold start is
an episode: it begins when the first request is held on a route with no ready replica and ends when no request
is held any more. Its end is one Event: `ColdStart` ("held 37 requests for 1.2 s while scaling 0→1") when a
replica came, `ColdStartAbandoned` when every held client left first; `ColdStartTimedOut` is sent once per
episode, as soon as a held request reaches conditionWait. With a scheduler (`later`), an episode ends only after
EPISODE_GRACE seconds without a held request: a request whose replica refused the connection right after it was
ready is held again, and that is still the same cold start.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from ebb.scaling.types import ScalingEvent

#: Hold-time buckets (seconds): a warm process starts in tens of ms, a pod in seconds, conditionWait is 30 s.
HOLD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

T = TypeVar("T")

#: Seconds without a held request before a cold start is over (when a scheduler is given).
EPISODE_GRACE = 0.5

REASON_COLD_START = "ColdStart"
REASON_TIMED_OUT = "ColdStartTimedOut"
REASON_ABANDONED = "ColdStartAbandoned"


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 10 else f"{value:.0f} s"


@dataclass
class _Episode:
    started: float
    ready_before: int
    held: int = 0
    served: int = 0
    timed_out: int = 0
    abandoned: int = 0
    #: Seconds from the first hold to the first held request getting a replica.
    ready_after: float | None = None
    said_timeout: bool = False


@dataclass
class Hold:
    """One held request; `done(replica)` says whether it got one (None: conditionWait passed)."""

    stats: RouteStats
    started: float
    outcome: str = "abandoned"

    def done(self, replica: T | None) -> T | None:
        self.outcome = "served" if replica is not None else "timed_out"
        return replica


@dataclass
class RouteStats:
    """One route's counters since the interceptor started; `ready` reads the route's ready replicas."""

    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    #: The route's ready replicas now (set by whoever builds the route; 0 without).
    ready: Callable[[], int] = lambda: 0
    #: What the route's conditionWait is, for the ColdStartTimedOut message.
    condition_wait: Callable[[], float | None] = lambda: None
    #: Called with each cold-start Event (ColdStart, ColdStartTimedOut, ColdStartAbandoned).
    listeners: list[Callable[[ScalingEvent], None]] = field(default_factory=list)
    #: Calls a function after a delay (the event loop's call_later); None: an episode ends at its last hold.
    later: Callable[[float, Callable[[], None]], object] | None = None
    requests: int = 0
    upstream_errors: int = 0
    timeouts: int = 0
    rejected: int = 0
    cold_starts: int = 0
    abandoned: int = 0
    held_now: int = 0
    #: Requests waiting now for a connection to their replica (all of its connections in use: the limit per
    #: replica, `--max-connections`), and how many ever did.
    upstream_waiting: int = 0
    upstream_waits: int = 0
    #: Cumulative hold-time histogram: counts per bucket of HOLD_BUCKETS (and +Inf last), sum, count.
    hold_buckets: list[int] = field(default_factory=lambda: [0] * (len(HOLD_BUCKETS) + 1))
    hold_sum: float = 0.0
    hold_count: int = 0
    #: Wall time and message of the last cold start that ended (None before the first).
    last_cold_start: float | None = None
    last_cold_start_message: str | None = None
    _episode: _Episode | None = None
    #: Bumped at each hold's start and end: a scheduled end of an episode only runs if nothing happened since.
    _generation: int = 0

    # --- called by the interceptor ------------------------------------------------------------------

    def request_started(self) -> None:
        self.requests += 1

    def upstream_error(self) -> None:
        """A 502: the replica could not be reached, or failed before or while answering."""
        self.upstream_errors += 1

    def upstream_wait_started(self) -> None:
        """A request found every connection to its replica in use and waits for one."""
        self.upstream_waiting += 1
        self.upstream_waits += 1

    def upstream_wait_ended(self) -> None:
        self.upstream_waiting -= 1

    def timeout(self) -> None:
        """A 504: no replica within conditionWait, no response headers in time, or the request's deadline."""
        self.timeouts += 1

    def rejected_full(self) -> None:
        """A 503: too many requests held already."""
        self.rejected += 1

    @contextlib.contextmanager
    def holding(self) -> Iterator[Hold]:
        """Around the wait for a replica: `with stats.holding() as hold: replica = hold.done(await ...)`."""
        hold = self._hold_started()
        try:
            yield hold
        finally:
            self._hold_ended(hold)

    # --- the episode ----------------------------------------------------------------------------------

    def _hold_started(self) -> Hold:
        now = self.clock()
        self._generation += 1
        if self._episode is None:
            self._episode = _Episode(started=now, ready_before=self.ready())
            self.cold_starts += 1
        self._episode.held += 1
        self.held_now += 1
        return Hold(self, now)

    def _hold_ended(self, hold: Hold) -> None:
        now = self.clock()
        waited = max(0.0, now - hold.started)
        self.held_now -= 1
        self.hold_count += 1
        self.hold_sum += waited
        self.hold_buckets[bisect.bisect_left(HOLD_BUCKETS, waited)] += 1
        episode = self._episode
        if episode is None:
            return
        if hold.outcome == "served":
            episode.served += 1
            episode.ready_after = now - episode.started  # until the last held request got its replica
        elif hold.outcome == "timed_out":
            episode.timed_out += 1
            if not episode.said_timeout:
                episode.said_timeout = True
                wait = self.condition_wait()
                within = f"conditionWait ({wait:g}s)" if wait is not None else "its wait"
                self._emit(
                    ScalingEvent(
                        REASON_TIMED_OUT,
                        f"a request held for {_seconds(waited)} reached {within} with no ready replica "
                        f"({self.held_now} still held)",
                        "Warning",
                    )
                )
        else:
            episode.abandoned += 1
            self.abandoned += 1
        self._generation += 1
        if self.held_now == 0:
            if self.later is None:
                self._finish(self._generation, episode, now)
            else:
                generation = self._generation
                self.later(EPISODE_GRACE, lambda: self._finish(generation, episode, now))

    def _finish(self, generation: int, episode: _Episode, ended: float) -> None:
        if generation != self._generation or self._episode is not episode:
            return  # a request was held again meanwhile: the same cold start goes on
        self._episode = None
        self._episode_ended(episode, ended)

    def _episode_ended(self, episode: _Episode, now: float) -> None:
        others = []
        if episode.timed_out:
            others.append(f"{episode.timed_out} timed out")
        if episode.abandoned:
            others.append(f"{episode.abandoned} left first")
        extra = f" ({', '.join(others)})" if others else ""
        held = f"{episode.held} request{'s' if episode.held != 1 else ''}"
        if episode.served:
            took = episode.ready_after if episode.ready_after is not None else now - episode.started
            message = f"held {held} for {_seconds(took)} while scaling {episode.ready_before}→{self.ready()}{extra}"
            event = ScalingEvent(REASON_COLD_START, message, "Normal")
        elif episode.abandoned and not episode.timed_out:
            message = f"all {held} held left after {_seconds(now - episode.started)}, before a replica was ready"
            event = ScalingEvent(REASON_ABANDONED, message, "Warning")
        else:
            # Every held request timed out (ColdStartTimedOut said so): remembered, not said twice.
            message = f"held {held} for {_seconds(now - episode.started)}: no replica became ready{extra}"
            event = None
        self.last_cold_start = self.wall()
        self.last_cold_start_message = message
        if event is not None:
            self._emit(event)

    def _emit(self, event: ScalingEvent) -> None:
        for listener in self.listeners:
            listener(event)

    # --- read by /metrics and the dashboard ---------------------------------------------------------

    def histogram(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, `+Inf` last, as a Prometheus histogram has them."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, HOLD_BUCKETS), "+Inf"), self.hold_buckets, strict=True):
            total += count
            out.append((bound, float(total)))
        return out
