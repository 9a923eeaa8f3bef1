"""History tiers: the syntax and its errors, roll-ups through the tiers (injected clock), bounded size over
simulated weeks, and databases written before the tiers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ebb.observe.catalog import ObjectInfo
from ebb.observe.cost import Pricing
from ebb.observe.history import (
    DEFAULT_TIERS,
    DEFAULT_TIERS_TEXT,
    SETTLE,
    HistoryStore,
    Tier,
    TierError,
    parse_tiers,
    tier_sizes,
    with_retention,
)
from ebb.observe.metrics import TriggerInfo
from ebb.observe.overview import overview
from ebb.runtime.observer import ObjectRef, PollRecord

from ._records import SO, poll, trigger

DAY = 86400.0
#: A whole number of 5-minute buckets, so that buckets start where the test's polls start.
T0 = 1_700_000_100.0 - 1_700_000_100.0 % 300


@pytest.mark.parametrize(
    ("text", "tiers"),
    [
        (DEFAULT_TIERS_TEXT, DEFAULT_TIERS),
        ("10s:6h", (Tier(10, 6 * 3600),)),
        (" 1s:1h , 1m:1w ", (Tier(1, 3600), Tier(60, 7 * DAY))),
        ("1.5s:1h", (Tier(1.5, 3600),)),
        ("15s:1h,1m:2d,1h:52w", (Tier(15, 3600), Tier(60, 2 * DAY), Tier(3600, 364 * DAY))),
    ],
)
def test_tier_syntax(text: str, tiers: tuple[Tier, ...]) -> None:
    assert parse_tiers(text) == tiers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected tiers like 1s:1h,1m:2d,5m:60d"),
        ("1s", r"tier 1 \(1s\): expected RESOLUTION:KEEP"),
        ("1s:1h:2h", r"tier 1 \(1s:1h:2h\): expected RESOLUTION:KEEP"),
        ("1x:1h", r"tier 1 \(1x:1h\): resolution '1x' is not a duration; expected a number and a unit s, m, h, d or w"),
        ("1s:forever", r"tier 1 \(1s:forever\): keep 'forever' is not a duration"),
        ("0s:1h", r"tier 1 \(0s:1h\): resolution must be more than 0"),
        ("1s:1h,", r"tier 2 \(\): expected RESOLUTION:KEEP"),
        ("0.5s:1h", r"tier 1 \(0.5s:1h\): resolution must be at least 1s"),
        ("1m:30s", r"tier 1 \(1m:30s\): keep must be at least the resolution \(1m\)"),
        ("1m:1h,30s:2h", r"tier 2 \(30s:2h\): resolution must be coarser than tier 1's \(1m\)"),
        ("1m:1h,90s:2h", r"tier 2 \(90s:2h\): resolution must be a whole multiple of tier 1's \(1m\)"),
        ("1s:1h,1m:2d,5m:60d,1h:1w", r"tier 4 \(1h:1w\): keep must be longer than tier 3's \(60d\)"),
        ("1s:30d", r"tier 1 \(1s:30d\): keeps 2,592,000 points per object; at most 1,000,000"),
        (",".join(f"{2**i}s:{2**i}d" for i in range(9)), "at most 8 tiers, got 9"),
    ],
)
def test_bad_tiers_say_which_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(TierError, match=message):
        parse_tiers(text)


@pytest.mark.parametrize(
    ("retention", "tiers"),
    [
        (7 * DAY, (Tier(1, 3600), Tier(60, 2 * DAY), Tier(300, 7 * DAY))),
        (3600, (Tier(1, 3600),)),
        (1800, (Tier(1, 1800),)),
        (DAY, (Tier(1, 3600), Tier(60, DAY))),
        (90 * DAY, (Tier(1, 3600), Tier(60, 2 * DAY), Tier(300, 90 * DAY))),
    ],
)
def test_retention_cuts_or_stretches_the_tiers(retention: float, tiers: tuple[Tier, ...]) -> None:
    assert with_retention(DEFAULT_TIERS, retention) == tiers


def test_retention_shorter_than_the_finest_resolution_is_refused() -> None:
    with pytest.raises(TierError, match=r"retention 30s is shorter than the finest tier's resolution \(1m:1h\)"):
        with_retention((Tier(60, 3600),), 30)
    with pytest.raises(TierError, match="retention must be a duration above 0, got 0s"):
        with_retention(DEFAULT_TIERS, 0)


def _points(store: HistoryStore) -> list[tuple[float, float, float, float, float, float, str]]:
    return store.query(
        "SELECT resolution, time, active, current, peak, samples, triggers FROM points ORDER BY resolution, time"
    )  # type: ignore[return-value]


def _poll(t: float, value: float, *, current: int = 1, active: bool = False, ref: ObjectRef = SO) -> PollRecord:
    return poll(ref, t, (trigger(0, value, active=active),), current=current, desired=current, active=active)


# Each case: polls (offset from T0, value, replicas, active), maintain at T0 + `at`, then the expected points per
# resolution: (offset, mean value, max value, mean replicas, peak, active fraction, polls merged); a point
# without `max` (a single poll) has its value as its max.
ROLLUPS = [
    pytest.param(
        [(0.0, 4.0, 1, False), (0.4, 8.0, 3, True)],
        SETTLE + 1,
        {1.0: [(0.0, 6.0, 8.0, 2.0, 3, 0.5, 2)]},
        id="two polls in one second become one 1s point",
    ),
    pytest.param(
        [(0.0, 4.0, 1, False), (30.0, 8.0, 3, True)],
        SETTLE + 10,
        {0.0: [(30.0, 8.0, 8.0, 3.0, 3, 1.0, 1)], 1.0: [(0.0, 4.0, 4.0, 1.0, 1, 0.0, 1)]},
        id="the last minute stays raw",
    ),
    pytest.param(
        [(float(s), float(s), 1 + (s == 59), s < 15) for s in range(60)],
        3600 + 60,
        {60.0: [(0.0, 29.5, 59.0, 61 / 60, 2, 0.25, 60)]},
        id="an hour-old minute of 1s points becomes one 1m point",
    ),
    pytest.param(
        # minute 0: 6 polls of 10 (2 active), minute 1..4: one poll of 40 each (active): weights are polls.
        [(i * 10.0, 10.0, 1, i < 2) for i in range(6)] + [(60.0 * m, 40.0, 5, True) for m in range(1, 5)],
        2 * DAY + 300,
        {300.0: [(0.0, 22.0, 40.0, 2.6, 5, 0.6, 10)]},
        id="two-day-old 1m points become one 5m point, weighted by polls",
    ),
    pytest.param(
        [(0.0, 1.0, 1, False)],
        60 * DAY + 1,
        {},
        id="past the last tier's keep nothing is left",
    ),
    pytest.param(
        [(0.0, 1.0, 1, False), (301.0, 2.0, 2, True)],
        2 * DAY + 300 + 1,
        {60.0: [(300.0, 2.0, 2.0, 2.0, 2, 1.0, 1)], 300.0: [(0.0, 1.0, 1.0, 1.0, 1, 0.0, 1)]},
        id="only whole buckets older than the keep roll up",
    ),
]


@pytest.mark.parametrize(("polls", "at", "expected"), ROLLUPS)
def test_rollups(
    polls: list[tuple[float, float, int, bool]],
    at: float,
    expected: dict[float, list[tuple[float, float, float, float, int, float, int]]],
    tmp_path: Path,
) -> None:
    store = HistoryStore(tmp_path / "h.db")
    try:
        store.write([_poll(T0 + dt, v, current=c, active=a) for dt, v, c, a in polls])
        store.maintain(T0 + at)
        got: dict[float, list[tuple[float, float, float, float, int, float, int]]] = {}
        for resolution, t, active, current, peak, samples, triggers in _points(store):
            (trig,) = json.loads(triggers)
            got.setdefault(resolution, []).append(
                (t - T0, trig["value"], trig.get("max", trig["value"]), current, peak, active, samples)
            )
        assert got.keys() == expected.keys()
        for resolution, rows in expected.items():
            assert len(got[resolution]) == len(rows)
            for g, e in zip(got[resolution], rows, strict=True):
                assert g == pytest.approx(e), resolution
    finally:
        store.close()


def test_rolled_up_triggers_keep_target_and_last_error_compactly(tmp_path: Path) -> None:
    store = HistoryStore(None)
    try:
        store.write(
            [
                poll(SO, T0, (trigger(0, 1.0, name="orders"),), current=1, desired=1),
                poll(SO, T0 + 10, (trigger(0, None, error="timeout"),), current=1, desired=1),
            ]
        )
        store.maintain(T0 + 3600 + 120)
        (row,) = store.query("SELECT triggers FROM points")
        assert row[0] == (
            '[{"metric":"s0-redis-orders","name":"orders","target":5.0,"error":"timeout","value":1.0,"max":1.0}]'
        )  # no metric_type: AverageValue, KEDA's default
    finally:
        store.close()


def test_size_stays_bounded_over_simulated_weeks(tmp_path: Path) -> None:
    """Two weeks of polls every 45 s for two objects (each with two triggers), maintained every simulated 30
    minutes: the points per tier never exceed `tier_sizes`, and after the last tier's keep the file stops growing."""
    tiers = parse_tiers("1s:1h,1m:1d,5m:4d")  # a shorter last keep than the default: the same rule, faster
    store = HistoryStore(tmp_path / "h.db", tiers=tiers)
    other = ObjectRef("ScaledObject", "shop", "billing")
    bound = tier_sizes(tiers, 45.0)
    sizes: list[int] = []
    try:
        t = T0
        for _ in range(14 * 48):  # two weeks of half hours
            store.write(
                [
                    poll(ref, t + i * 45, (trigger(0, float(i)), trigger(1, 2.0 * i)), current=i % 4, desired=i % 4)
                    for i in range(40)
                    for ref in (SO, other)
                ]
            )
            t += 1800
            store.maintain(t)
            if (t - T0) % DAY == 0:
                counts = dict(
                    store.query("SELECT resolution, COUNT(*) FROM points WHERE key = ? GROUP BY 1", (SO.key,))
                )
                assert counts.get(0.0, 0) <= bound[0]
                for tier, most in zip(tiers, bound[1:], strict=True):
                    assert counts.get(tier.resolution, 0) <= most, (tier, counts)
                (pages,) = store.query("PRAGMA page_count")[0]
                sizes.append(int(pages))
        (first,) = store.query("SELECT MIN(time) FROM points")[0]
        assert first >= t - tiers[-1].keep
        # From a day after the last keep on, the file does not grow (SQLite reuses the freed pages).
        settled = sizes[5:]
        assert max(settled) <= settled[0] * 1.02, sizes
    finally:
        store.close()


#: The schema of the first release (no samples, no state/cost/reason columns), with its 60 s buckets.
OLD_SCHEMA = """
CREATE TABLE objects (
    key TEXT PRIMARY KEY, kind TEXT, namespace TEXT, name TEXT,
    target TEXT, min_replicas INTEGER, max_replicas INTEGER, trigger_types TEXT,
    time REAL, active INTEGER, paused INTEGER, desired INTEGER, current INTEGER, ready INTEGER,
    triggers TEXT, last_scale REAL
);
CREATE TABLE points (
    key TEXT NOT NULL, time REAL NOT NULL, resolution REAL NOT NULL,
    active REAL, desired REAL, current REAL, ready REAL, peak REAL, triggers TEXT
);
CREATE TABLE events (
    time REAL NOT NULL, key TEXT, kind TEXT, namespace TEXT, name TEXT, type TEXT, reason TEXT, message TEXT
);
"""


def _old_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    trig = '[{"metric": "s0-redis-orders", "name": null, "value": %s, "target": 5.0, "active": false, "error": null}]'
    rows = [(SO.key, T0 + 60 * m, 60.0, 1.0, 2.0, 2.0, 2.0, 3.0, trig % float(m)) for m in range(10)]
    rows += [(SO.key, T0 + 3 * 3600 + 10 * i, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, trig % 7.0) for i in range(6)]
    db.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute(
        "INSERT INTO objects VALUES (?, 'ScaledObject', 'shop', 'orders', 'ProcessGroup/w', 0, 4, '[\"redis\"]', "
        "?, 1, 0, 1, 1, 1, ?, NULL)",
        (SO.key, T0 + 3 * 3600 + 50, trig % 7.0),
    )
    db.commit()
    db.close()


def test_an_older_database_is_read_as_it_was_written(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    readonly = HistoryStore(path, readonly=True)  # `ebb dashboard` on an old file: nothing is changed
    try:
        series = readonly.series(SO.key, T0, T0 + 4 * 3600)
        assert series is not None and len(series["points"]) == 16
        assert readonly.span() == (T0, T0 + 3 * 3600 + 50)
        assert [v for _, v in readonly.trigger_series(SO.key, "s0-redis-orders", T0, T0 + 600)] == [
            float(m) for m in range(10)
        ]
    finally:
        readonly.close()
    assert "samples" not in {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(points)")}


def test_an_older_database_is_migrated_and_rolls_up_with_the_tiers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    store = HistoryStore(path)
    try:
        assert "samples" in {r[1] for r in store.query("PRAGMA table_info(points)")}
        # Its 60 s buckets are the 1m tier's; two days on they roll into 5 minutes, each weighing one poll.
        store.write([_poll(T0 + 3 * 3600 + 70, 9.0)])
        store.maintain(T0 + 2 * DAY + 3600)
        counts = dict(store.query("SELECT resolution, COUNT(*) FROM points GROUP BY 1"))
        assert counts == {300.0: 2, 60.0: 2}
        values = store.trigger_series(SO.key, "s0-redis-orders", T0, T0 + 600)
        assert values == [(T0, 2.0), (T0 + 300, 7.0)]
        # Its raw points roll up with the new one through the 1s tier into minutes.
        minutes = store.trigger_series(SO.key, "s0-redis-orders", T0 + 3 * 3600, T0 + 4 * 3600)
        assert minutes == [(T0 + 3 * 3600, 7.0), (T0 + 3 * 3600 + 60, 9.0)]
        assert store.objects()[0]["state"] == "idle"  # a column the old database lacked, written by the new poll
    finally:
        store.close()


def test_replica_seconds_count_rolled_up_points_in_full(tmp_path: Path) -> None:
    """Three days at 2 replicas, polled every 30 s, then maintained: the range holds 5-minute, 1-minute and 1-second
    points, and each counts for its whole step (a 5-minute step is not a gap)."""
    store = HistoryStore(tmp_path / "h.db")
    try:
        store.register([ObjectInfo(SO, "ProcessGroup/w", 0, 4, (TriggerInfo(0, "redis"),))])
        end = T0 + 3 * DAY
        store.write([_poll(T0 + 30 * i, 1.0, current=2) for i in range(int(3 * DAY / 30) + 1)])
        store.maintain(end + 30)
        assert {r for (r,) in store.query("SELECT DISTINCT resolution FROM points")} == {0.0, 1.0, 60.0, 300.0}
        series = store.series(SO.key, T0, end)
        assert series is not None
        assert series["replica_seconds"] == pytest.approx(2 * 3 * DAY, rel=0.01)
        view = overview(store, T0, end, pricing=Pricing(None))
        (obj,) = view["objects"]
        assert obj["replica_seconds"] == pytest.approx(2 * 3 * DAY, rel=0.01)
    finally:
        store.close()


def test_trigger_steps_put_every_tier_on_one_grid_for_a_forecaster(tmp_path: Path) -> None:
    """Three days polled every 30 s (value: the hour of day, +1 on every other poll), ebb stopped for two hours, then
    maintained: one value per minute from 5-minute, 1-minute and 1-second points alike, none in the gap."""
    store = HistoryStore(tmp_path / "h.db")
    try:
        end = T0 + 3 * DAY
        polls = [T0 + 30 * i for i in range(int(3 * DAY / 30))]
        gap = (T0 + 30 * 3600, T0 + 32 * 3600)
        store.write(
            [
                _poll(t, float(int((t - T0) // 3600) % 24 + i % 2))
                for i, t in enumerate(polls)
                if not gap[0] <= t < gap[1]
            ]
        )
        store.maintain(end + 30)
        assert {r for (r,) in store.query("SELECT DISTINCT resolution FROM points")} == {0.0, 1.0, 60.0, 300.0}
        highest = store.trigger_steps(SO.key, "s0-redis-orders", T0, end, 60.0)
        expected = [t for t in (T0 + 60 * i for i in range(3 * 1440)) if not gap[0] <= t < gap[1]]
        assert [t for t, _ in highest] == expected
        assert [v for _, v in highest] == [int((t - T0) // 3600) % 24 + 1 for t in expected]
        means = store.trigger_steps(SO.key, "s0-redis-orders", T0, end, 60.0, field="value")
        assert [v for _, v in means] == pytest.approx([int((t - T0) // 3600) % 24 + 0.5 for t in expected])
        # A coarser grid than the points: each 15-minute step takes the highest point inside it.
        quarter = store.trigger_steps(SO.key, "s0-redis-orders", T0, T0 + 3600, 900.0)
        assert quarter == [(T0 + 900 * q, 1.0) for q in range(4)]
    finally:
        store.close()
