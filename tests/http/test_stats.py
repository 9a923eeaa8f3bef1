"""RouteStats on a hand-driven clock: counters, the hold-time histogram, and one Event per cold start."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from ebb.http.stats import HOLD_BUCKETS, RouteStats
from ebb.observe.http_routes import route_identity
from ebb.scaling.types import ScalingEvent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats_with(ready: list[int]) -> tuple[RouteStats, Clock, list[ScalingEvent]]:
    clock = Clock()
    events: list[ScalingEvent] = []
    stats = RouteStats(clock=clock, wall=lambda: 1_700_000_000.0, ready=lambda: ready[0], condition_wait=lambda: 30.0)
    stats.listeners.append(events.append)
    return stats, clock, events


def test_a_cold_start_that_ends_with_a_replica_is_one_event_with_the_count_the_wait_and_the_replicas() -> None:
    ready = [0]
    stats, clock, events = stats_with(ready)
    holds = []
    cms = []
    for _ in range(37):
        cm = stats.holding()
        holds.append(cm.__enter__())
        cms.append(cm)
        clock.now += 0.01
    clock.now = 101.2
    ready[0] = 1
    for cm, hold in zip(cms, holds, strict=True):
        hold.done(object())
        cm.__exit__(None, None, None)
        assert events == [] or cm is cms[-1]
    assert [(e.reason, e.type) for e in events] == [("ColdStart", "Normal")]
    assert events[0].message == "held 37 requests for 1.2 s while scaling 0→1"
    assert (stats.cold_starts, stats.held_now, stats.hold_count, stats.abandoned) == (1, 0, 37, 0)
    assert stats.last_cold_start == 1_700_000_000.0
    hist = dict(stats.histogram())
    # Waits from 0.84 s (the last one held) to 1.2 s (the first): 17 of them at most 1 s.
    assert (hist["0.5"], hist["1.0"], hist["2.5"], hist["+Inf"]) == (0, 17, 37, 37)


def test_a_timeout_is_said_once_per_cold_start_and_a_cold_start_where_every_client_left_is_abandoned() -> None:
    stats, clock, events = stats_with([0])
    with stats.holding() as a:
        with stats.holding() as b:
            clock.now += 30.0
            b.done(None)
        a.done(None)
    assert [e.reason for e in events] == ["ColdStartTimedOut"]
    assert "reached conditionWait (30s)" in events[0].message and events[0].type == "Warning"
    events.clear()
    with contextlib.suppress(ConnectionResetError), stats.holding():
        clock.now += 2.0
        raise ConnectionResetError  # the client left while held
    assert [(e.reason, e.message) for e in events] == [
        ("ColdStartAbandoned", "all 1 request held left after 2 s, before a replica was ready")
    ]
    assert (stats.cold_starts, stats.abandoned, stats.held_now) == (2, 1, 0)


@pytest.mark.parametrize(("waited", "bucket"), [(0.0, "0.005"), (0.005, "0.005"), (0.0051, "0.01"), (500.0, "+Inf")])
def test_hold_time_lands_in_the_prometheus_bucket_whose_bound_it_does_not_exceed(waited: float, bucket: str) -> None:
    stats, clock, _ = stats_with([0])
    with stats.holding() as hold:
        clock.now += waited
        hold.done(object())
    hist = stats.histogram()
    first = next(le for le, count in hist if count == 1)
    assert first == bucket and len(hist) == len(HOLD_BUCKETS) + 1


def test_route_identity_splits_a_ref() -> None:
    assert route_identity("HTTPScaledObject shop/web") == ("HTTPScaledObject", "shop", "web")
    assert route_identity("InterceptorRoute api") == ("InterceptorRoute", "default", "api")


def test_a_request_held_again_within_the_grace_is_the_same_cold_start() -> None:
    """A replica that refused the connection right after it looked ready: the request waits again."""
    stats, clock, events = stats_with([0])
    scheduled: list[tuple[float, Callable[[], None]]] = []
    stats.later = lambda delay, call: scheduled.append((delay, call))
    with stats.holding() as hold:
        clock.now += 0.2
        hold.done(object())
    assert events == [] and len(scheduled) == 1  # the end waits for the grace
    with stats.holding() as hold:  # refused: held again before the grace ran out
        clock.now += 0.3
        hold.done(object())
    for _, call in scheduled:
        call()
    assert [(e.reason, e.message) for e in events] == [("ColdStart", "held 2 requests for 0.5 s while scaling 0→0")]
    assert stats.cold_starts == 1
    with stats.holding() as hold:  # after the grace: a new cold start
        hold.done(None)
    scheduled[-1][1]()
    assert stats.cold_starts == 2 and events[-1].reason == "ColdStartTimedOut"
