"""Reading traces: every bad input is a TraceError naming the row and field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebb.observe.history import HistoryStore
from ebb.runtime.observer import ObjectRef, PollRecord
from ebb.scaling.types import Decision, TriggerResult
from ebb.simulate.trace import TraceError, read_trace

GOOD = "timestamp,value\n2015-03-01 00:00:00,3\n2015-03-01 00:05:00,0\n2015-03-01 00:10:00,7\n"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_counts_read_with_their_interval(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, GOOD))
    assert trace.interval == 300.0
    assert trace.counts is not None and trace.counts.tolist() == [3.0, 0.0, 7.0]
    assert trace.duration == 900.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("timestamp,value\n", "has a header but no rows"),
        ("timestamp,value\n2015-03-01 00:00:00,1\n", "at least two intervals"),
        ("timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00,nan\n", "row 3, field 'value': NaN"),
        ("timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00,-2\n", "row 3, field 'value': negative"),
        (
            "timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00,1e12\n",
            "row 3, field 'value': 1e12 is too large",
        ),
        ("timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00,lots\n", "row 3, field 'value': 'lots' is not"),
        ("timestamp,value\nyesterday,1\n2015-03-01 00:05:00,1\n", "row 2, field 'timestamp': cannot read timestamp"),
        (
            "timestamp,value\n2015-03-01 00:05:00,1\n2015-03-01 00:00:00,1\n",
            "row 3: timestamp '2015-03-01 00:00:00' goes back before row 2's",
        ),
        (
            "timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:00:00,1\n",
            "row 3: timestamp '2015-03-01 00:00:00' repeats",
        ),
        (
            "timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00,1\n2015-03-01 00:10:00,1\n"
            "2015-03-01 00:25:00,1\n",
            "row 5: a gap of 2 missing interval(s) of 300 s after row 4",
        ),
        ("timestamp,value\n2015-03-01 00:00:00,1\n2015-03-01 00:05:00\n", "row 3: expected 2 fields, got 1"),
    ],
)
def test_bad_counts_are_named_by_row_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(TraceError) as err:
        read_trace(write(tmp_path, text))
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("gaps", "filled"), [("zero", [1.0, 2.0, 0.0, 0.0, 5.0]), ("previous", [1.0, 2.0, 2.0, 2.0, 5.0])]
)
def test_gaps_are_filled_only_when_asked(tmp_path: Path, gaps: str, filled: list[float]) -> None:
    text = "timestamp,value\n0,1\n60,2\n240,5\n"
    trace = read_trace(write(tmp_path, text), "counts", gaps)  # type: ignore[arg-type]
    assert trace.counts is not None and trace.counts.tolist() == filled
    assert trace.filled_gaps == 2


def test_arrivals_with_seven_fractional_digits(tmp_path: Path) -> None:
    text = "TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.9799600,1\n2023-11-16 18:17:04.0319600,2\n"
    trace = read_trace(write(tmp_path, text), "arrivals")
    assert trace.arrivals is not None
    assert trace.arrivals.tolist() == pytest.approx([0.0, 0.052])


def test_arrivals_out_of_order(tmp_path: Path) -> None:
    text = "timestamp\n10\n12\n11\n"
    with pytest.raises(TraceError, match="row 4: timestamp '11' goes back before row 3's"):
        read_trace(write(tmp_path, text), "arrivals")


@pytest.mark.parametrize("fmt", ["counts", "arrivals", "history"])
def test_missing_file(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "absent.csv", fmt)  # type: ignore[arg-type]


def test_history_that_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not an ebb history database"):
        read_trace(write(tmp_path, "hello", "history.db"), "history")


def test_history_recorded_by_ebb_run(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    ref = ObjectRef("ScaledObject", "default", "worker")
    store.write(
        [
            PollRecord(
                ref=ref,
                time=1_000_000.0 + 10 * i,
                triggers=(TriggerResult("s0-redis", 5.0, value=float(i % 7), active=True),),
                decision=Decision(1, True, "ScalerActive"),
                current_replicas=1,
                desired_replicas=1,
                ready_replicas=1,
                lateness=0.0,
                read_seconds=0.001,
            )
            for i in range(60)
        ]
    )
    store.close()
    trace = read_trace(path, "history")
    assert trace.counts is not None
    assert trace.interval == 10.0 and len(trace.counts) == 60
    assert trace.counts.max() == 6.0


def test_history_with_rolled_up_tiers_is_read_over_its_whole_span(tmp_path: Path) -> None:
    """Days of 5-minute points and a recent hour at the polling interval: one trace at 5 minutes over all of it."""
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    ref = ObjectRef("ScaledObject", "default", "worker")
    start = 1_000_200.0 - 1_000_200.0 % 300
    polls = [start + 30 * i for i in range(3 * 2880)]  # three days, every 30 s
    store.write(
        [
            PollRecord(
                ref=ref,
                time=t,
                triggers=(TriggerResult("s0-redis", 5.0, value=float(int((t - start) // 3600) % 24), active=True),),
                decision=Decision(1, True, "ScalerActive"),
                current_replicas=1,
                desired_replicas=1,
                ready_replicas=1,
                lateness=0.0,
                read_seconds=0.001,
            )
            for t in polls
        ]
    )
    store.maintain(polls[-1] + 30)
    assert {r for (r,) in store.query("SELECT DISTINCT resolution FROM points")} == {0.0, 1.0, 60.0, 300.0}
    store.close()
    trace = read_trace(path, "history")
    assert trace.counts is not None and trace.interval == 300.0
    assert len(trace.counts) == 3 * 288
    # Each hour's value, whichever tier holds it.
    assert list(trace.counts[:24]) == [float(h // 12) for h in range(24)]
    assert list(trace.counts[-12:]) == [23.0] * 12
