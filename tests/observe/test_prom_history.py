"""History read back from a real Prometheus (Debian's, on a free loopback port) loaded with a known series.

The series is written as OpenMetrics and turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`
(Prometheus' own backfill), so the test knows every sample the range queries must return.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest

from ebb.observe.history import HistoryStore
from ebb.observe.prom_history import ReadBackError, read_back, restore
from ebb.runtime.observer import ObjectRef
from tests.scalers._prometheus_server import free_port, prometheus_binary

from ._records import poll, trigger

REF = ObjectRef("ScaledObject", "shop", "orders-prom")
METRIC = "s0-redis-orders"
STEP = 60.0
#: The known series: three days ending two hours ago, one sample a minute, on whole minutes.
END = math.floor((time.time() - 7200) / STEP) * STEP
START = END - 3 * 86400
#: From here on the samples come from a second operator pod (a failover): the read-back merges both.
FAILOVER = END - 86400


def value_at(t: float) -> float:
    """A daily cycle with a burst every 40 minutes: what the forecaster should learn back."""
    minute = int(t // 60)
    return round(50 + 40 * math.sin(2 * math.pi * (t % 86400) / 86400) + (30 if minute % 40 < 5 else 0), 3)


def replicas_at(t: float) -> int:
    return math.ceil(value_at(t) / 20)


def _openmetrics() -> str:
    common = 'namespace="shop",scaler="redisScaler",triggerIndex="0",type="scaledobject"'
    labels = f'{common},scaledObject="orders-prom",metric="{METRIC}"'
    other = f'{common},scaledObject="orders-other",metric="s0-redis-x"'
    obj = 'namespace="shop",type="scaledobject",name="orders-prom"'
    lines = ["# HELP keda_scaler_metrics_value x", "# TYPE keda_scaler_metrics_value gauge"]
    times = [START + i * STEP for i in range(int((END - START) / STEP) + 1)]
    # The pods overlap for ten minutes (the old one still exported while the new one led): one point per time.
    for pod, keep in (("a", lambda t: t < FAILOVER + 600), ("b", lambda t: t >= FAILOVER)):
        lines += [f'keda_scaler_metrics_value{{{labels},pod="{pod}"}} {value_at(t)} {t:.0f}' for t in times if keep(t)]
    lines += [f"keda_scaler_metrics_value{{{other}}} 999 {t:.0f}" for t in times]
    for name in ("current", "desired"):
        lines += [f"# HELP ebb_{name}_replicas x", f"# TYPE ebb_{name}_replicas gauge"]
        lines += [f"ebb_{name}_replicas{{{obj}}} {replicas_at(t)} {t:.0f}" for t in times]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = prometheus_binary()
    if binary is None or not os.access("/usr/bin/promtool", os.X_OK):
        pytest.skip("Debian's prometheus (with promtool) is not installed")
    d = tmp_path_factory.mktemp("prom")
    (d / "series.om").write_text(_openmetrics())
    data = d / "data"
    subprocess.run(
        ["/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics", str(d / "series.om"), str(data)],
        check=True,
        capture_output=True,
    )
    (d / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    log = (d / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=30d",
            # Backfilled blocks hold no staleness markers (a scraped pod that goes away gets them): a lookback
            # shorter than the sample interval stands in, so the old pod's last value does not linger 5 minutes.
            "--query.lookback-delta=59s",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(d / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v1/query?query=count(ebb_current_replicas)&time={END}") as r:
                    if json.load(r)["data"]["result"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus never served the backfilled blocks")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def test_read_back_returns_the_exported_series_across_a_failover(prometheus: str) -> None:
    got = await read_back(prometheus, REF, METRIC, START, END, STEP)
    expected = [(START + i * STEP, value_at(START + i * STEP)) for i in range(int((END - START) / STEP) + 1)]
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
