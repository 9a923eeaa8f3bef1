"""History read back from a real Prometheus loaded with a known series (see `_prom_backfill`)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import aiohttp
import pytest

from ebb.observe.history import HistoryStore
from ebb.observe.prom_history import ReadBackError, read_back, restore
from ebb.runtime.observer import ObjectRef
from tests.scalers._prometheus_server import free_port

from ._prom_backfill import END, METRIC, START, STEP, backfilled_prometheus, replicas_at, sample_times, value_at
from ._records import poll, trigger

REF = ObjectRef("ScaledObject", "shop", "orders-prom")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with backfilled_prometheus(tmp_path_factory.mktemp("prom"), [("shop", "orders-prom")]) as url:
        yield url


async def test_read_back_returns_the_exported_series_across_a_failover(prometheus: str) -> None:
    got = await read_back(prometheus, REF, METRIC, START, END, STEP)
    expected = [(t, value_at(t)) for t in sample_times()]
    assert [t for t, _ in got] == [t for t, _ in expected]  # one point per time, though two pods exported some
    assert [v for _, v in got] == pytest.approx([v for _, v in expected])


async def test_read_back_in_chunks_gives_the_same_points(prometheus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ebb.observe.prom_history as ph

    whole = await read_back(prometheus, REF, METRIC, START, START + 6 * 3600, STEP)
    monkeypatch.setattr(ph, "MAX_POINTS_PER_QUERY", 7)  # 361 points in 52 queries
    chunked = await read_back(prometheus, REF, METRIC, START, START + 6 * 3600, STEP)
    assert chunked == whole and len(whole) == 361


async def test_read_back_of_an_unknown_trigger_is_empty(prometheus: str) -> None:
    assert await read_back(prometheus, REF, "s9-nothing", START, END, STEP) == []


async def test_restore_rebuilds_a_restarted_operators_history(prometheus: str) -> None:
    """An operator that restarts with an empty (in-memory) store gets its trigger values and replicas back, where
    it has no point of its own."""
    store = HistoryStore(None)
    try:
        now, start = END, END - 2 * 86400
        # What the new replica polled itself since it started: its own point wins over Prometheus' in its minute.
        store.write([poll(REF, END - 30, (trigger(0, 7.0),), current=9, desired=9)])
        added = await restore(store, prometheus, REF, now, window=2 * 86400, step=STEP)
        series = store.trigger_series(REF.key, METRIC, start, now)
        own = [(t, v) for t, v in series if t == END - 30]
        restored = [(t, v) for t, v in series if t != END - 30]
        assert own == [(END - 30, 7.0)]
        assert added == len(restored)
        assert [t for t, _ in restored] == [
            start + i * STEP for i in range(2 * 1440 + 1) if start + i * STEP != END - 60
        ]
        assert [v for _, v in restored] == pytest.approx([value_at(t) for t, _ in restored])
        points = store.series(REF.key, now - 3600, now - 1800)
        assert points is not None and len(points["points"]) == 31
        assert [p["current"] for p in points["points"]] == [replicas_at(p["time"]) for p in points["points"]]
        # Another object's series is not mixed in.
        assert {t["metric"] for p in points["points"] for t in p["triggers"]} == {METRIC}
        # A second restore adds nothing: every step is covered now.
        assert await restore(store, prometheus, REF, now, window=2 * 86400, step=STEP) == 0
    finally:
        store.close()


async def test_rolled_up_restore_stays_within_the_tiers(prometheus: str) -> None:
    store = HistoryStore(None)
    try:
        now = END
        await restore(store, prometheus, REF, now, window=3 * 86400, step=STEP)
        store.maintain(now)
        counts = dict(store.query("SELECT resolution, COUNT(*) FROM points GROUP BY resolution"))
        # The last two days at 1 min (the first tier, 1 s, is finer than the read-back), the day before at 5 min:
        # points before the last whole 5 minutes older than two days were rolled up.
        times = [now - 3 * 86400 + i * STEP for i in range(3 * 1440 + 1)]
        cutoff = math.floor((now - 2 * 86400) / 300) * 300
        assert counts == {60.0: sum(t >= cutoff for t in times), 300.0: len({t // 300 for t in times if t < cutoff})}
        assert counts[60.0] <= 2 * 1440 + 5 and counts[300.0] <= 288 + 1
    finally:
        store.close()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http://127.0.0.1:{closed}", "cannot query"),
        ("{prom}/nothing-here", "HTTP 404"),
    ],
)
async def test_read_back_errors_name_the_address(prometheus: str, address: str, message: str) -> None:
    address = address.format(closed=free_port(), prom=prometheus)
    with pytest.raises(ReadBackError, match=message) as info:
        await read_back(address, REF, METRIC, START, END, STEP)
    assert address in str(info.value)


async def test_a_bad_query_is_prometheus_error_message(prometheus: str) -> None:
    from ebb.observe.prom_history import query_range

    async with aiohttp.ClientSession() as session:
        with pytest.raises(ReadBackError, match="parse error"):
            await query_range(prometheus, "max(", START, END, STEP, session=session)
