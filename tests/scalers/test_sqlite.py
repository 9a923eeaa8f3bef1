"""The sqlite scaler against real database files in a temporary directory."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import TriggerContext, build_scaler
from ebb.scalers.base import Scaler

COUNT_PENDING = "SELECT count(*) FROM jobs WHERE state = 'pending'"


def make_db(path: Path, *, pending: int = 0, done: int = 0, wal: bool = True) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, note TEXT)")
        conn.executemany("INSERT INTO jobs (state) VALUES (?)", [("pending",)] * pending + [("done",)] * done)
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    make_db(path, pending=7, done=3)
    return path


@pytest.fixture
async def scalers() -> AsyncIterator[list[Scaler]]:
    """Scalers a test builds are closed after it, as the runtime would."""
    made: list[Scaler] = []
    yield made
    for scaler in made:
        await scaler.close()


@pytest.fixture
def make(scalers: list[Scaler]) -> Iterator[Any]:
    def _make(metadata: dict[str, str], timeout: float = 3.0) -> Scaler:
        scaler = build_scaler("sqlite", metadata, ctx=TriggerContext(timeout=timeout))
        scalers.append(scaler)
        return scaler

    yield _make


def meta(path: Path | str, query: str = COUNT_PENDING, **extra: str) -> dict[str, str]:
    return {"databasePath": str(path), "query": query, "targetQueryValue": "5", **extra}


async def test_counts_rows(db: Path, make: Any) -> None:
    scaler = make(meta(db))
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 7
    assert reading.active


async def test_sees_new_rows_on_the_next_poll(db: Path, make: Any) -> None:
    scaler = make(meta(db))
    assert (await scaler.get_metric_and_activity()).value == 7
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO jobs (state) VALUES ('pending')", [()] * 5)
    conn.close()
    assert (await scaler.get_metric_and_activity()).value == 12


@pytest.mark.parametrize(
    ("pending", "activation", "active"),
    [(0, "0", False), (1, "0", True), (3, "3", False), (4, "3", True), (3, "2.5", True)],
)
async def test_activation_threshold(tmp_path: Path, make: Any, pending: int, activation: str, active: bool) -> None:
    path = tmp_path / "a.db"
    make_db(path, pending=pending, done=2)
    reading = await make(meta(path, activationTargetQueryValue=activation)).get_metric_and_activity()
    assert reading.value == pending
    assert reading.active is active


async def test_path_is_relative_to_working_directory(db: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    scaler = make(meta("jobs.db"))
    assert (await scaler.get_metric_and_activity()).value == 7


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT avg(id) FROM jobs WHERE state = 'pending'", 4.0),
        ("SELECT '12.5'", 12.5),
        ("SELECT count(*) FROM jobs UNION ALL SELECT 99", 10.0),  # first row, as KEDA's QueryRow
    ],
)
async def test_numeric_results(db: Path, make: Any, query: str, value: float) -> None:
    assert (await make(meta(db, query)).get_metric_and_activity()).value == value


async def test_missing_file_is_reported_and_not_created(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(ScalerError, match="no such file") as err:
        await make(meta(path)).get_metric_and_activity()
    assert str(path) in str(err.value)
    assert not path.exists()


async def test_file_appearing_later_is_picked_up(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "later.db"
    scaler = make(meta(path))
    with pytest.raises(ScalerError):
        await scaler.get_metric_and_activity()
    make_db(path, pending=2)
    assert (await scaler.get_metric_and_activity()).value == 2


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("SELEC count(*) FROM jobs", "syntax error"),
        ("SELECT count(*) FROM no_such_table", "no such table"),
        ("SELECT max(id) FROM jobs WHERE state = 'lost'", "NULL"),
        ("SELECT id FROM jobs WHERE state = 'lost'", "no rows"),
        ("SELECT count(*), 1 FROM jobs", "2 columns"),
        ("SELECT 'many'", "not a number"),
        ("SELECT x'00ff'", "binary data"),
        ("SELECT 1; SELECT 2", "one statement"),
    ],
)
async def test_query_problems_are_scaler_errors(db: Path, make: Any, query: str, fragment: str) -> None:
    with pytest.raises(ScalerError) as err:
        await make(meta(db, query)).get_metric_and_activity()
    assert fragment.lower() in str(err.value).lower()
    assert "triggers[0] (sqlite)" in str(err.value)


async def test_database_is_opened_read_only(db: Path, make: Any) -> None:
    with pytest.raises(ScalerError, match="readonly"):
        await make(meta(db, "DELETE FROM jobs RETURNING 1")).get_metric_and_activity()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (10,)
    conn.close()


async def test_recovers_after_an_error(db: Path, make: Any) -> None:
    scaler = make(meta(db, "SELECT count(*) FROM later"))
    with pytest.raises(ScalerError, match="no such table"):
        await scaler.get_metric_and_activity()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE later (x)")
        conn.execute("INSERT INTO later VALUES (1), (2)")
    conn.close()
    assert (await scaler.get_metric_and_activity()).value == 2


async def test_writer_in_a_transaction_does_not_block_reads_wal(db: Path, make: Any) -> None:
    scaler = make(meta(db))
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO jobs (state) VALUES ('pending')", [()] * 4)
        # The uncommitted rows are invisible, and the read does not wait for the writer.
        assert (await scaler.get_metric_and_activity()).value == 7
        writer.execute("COMMIT")
        assert (await scaler.get_metric_and_activity()).value == 11
    finally:
        writer.close()


async def test_writer_with_reserved_lock_does_not_block_reads_rollback_journal(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "rollback.db"
    make_db(path, pending=3, wal=False)
    scaler = make(meta(path))
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO jobs (state) VALUES ('pending')")
        assert (await scaler.get_metric_and_activity()).value == 3
    finally:
        writer.execute("ROLLBACK")
        writer.close()


async def test_exclusive_lock_times_out_then_recovers(tmp_path: Path, make: Any) -> None:
    # Only an EXCLUSIVE lock (rollback journal) keeps readers out: the poll fails within its timeout and
    # leaves the scaler usable once the writer is gone.
    path = tmp_path / "locked.db"
    make_db(path, pending=3, wal=False)
    scaler = make(meta(path), timeout=0.3)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ScalerError, match=r"locked|no answer"):
            await scaler.get_metric_and_activity()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (await scaler.get_metric_and_activity()).value == 3


async def test_close_then_poll_again(db: Path, make: Any) -> None:
    scaler = make(meta(db))
    assert (await scaler.get_metric_and_activity()).value == 7
    await scaler.close()
    await scaler.close()
    assert (await scaler.get_metric_and_activity()).value == 7


async def test_metric_spec(db: Path) -> None:
    scaler = build_scaler("sqlite", meta(db), ctx=TriggerContext(trigger_index=3), metric_type="Value")
    spec = scaler.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s3-sqlite", 5.0, "Value")


def test_parsing_defaults(db: Path) -> None:
    scaler = build_scaler("sqlite", {"databasePath": "jobs.db", "query": "SELECT 1", "targetQueryValue": "2.5"})
    assert scaler.describe() == {
        "databasePath": "jobs.db",
        "query": "SELECT 1",
        "targetQueryValue": 2.5,
        "activationTargetQueryValue": 0.0,
    }


BAD = [
    # (case, overrides (None removes the key), parameter named, message fragment)
    ("no databasePath", {"databasePath": None}, "databasePath", "required"),
    ("no query", {"query": None}, "query", "required"),
    ("no targetQueryValue", {"targetQueryValue": None}, "targetQueryValue", "required"),
    ("negative target", {"targetQueryValue": "-1"}, "targetQueryValue", "greater than 0"),
    ("zero target", {"targetQueryValue": "0"}, "targetQueryValue", "greater than 0"),
    ("target not a number", {"targetQueryValue": "lots"}, "targetQueryValue", "number"),
    ("target infinite", {"targetQueryValue": "inf"}, "targetQueryValue", "finite"),
    ("activation not a number", {"activationTargetQueryValue": "x"}, "activationTargetQueryValue", "number"),
]


@pytest.mark.parametrize(("case", "overrides", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_metadata_names_the_parameter(case: str, overrides: dict[str, str | None], key: str, fragment: str) -> None:
    metadata = {k: v for k, v in {**meta("x.db"), **overrides}.items() if v is not None}
    with pytest.raises(SpecError) as err:
        build_scaler("sqlite", metadata, ctx=TriggerContext(namespace="demo", name="q", trigger_index=2))
    assert err.value.obj == "ScaledObject demo/q"
    assert err.value.field == f"spec.triggers[2].metadata.{key}"
    assert fragment in err.value.message.lower()


def test_utilization_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        build_scaler("sqlite", meta("x.db"), metric_type="Utilization")
    assert err.value.field == "spec.triggers[0].metricType"


async def test_runaway_query_is_interrupted_at_the_timeout(tmp_path: Path, make: Any) -> None:
    # Runs forever while `flag` is empty, answers 42 once it has a row. If the timed-out poll kept
    # running in its thread, it would hold the connection and the second poll would time out too.
    path = tmp_path / "slow.db"
    make_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE flag (x)")
    conn.close()
    forever = "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c)"
    scaler = make(
        meta(path, f"SELECT CASE WHEN (SELECT count(*) FROM flag) = 0 THEN {forever} ELSE 42 END"),
        timeout=0.3,
    )
    with pytest.raises(ScalerError, match="no answer within"):
        await scaler.get_metric_and_activity()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO flag VALUES (1)")
    conn.close()
    assert (await scaler.get_metric_and_activity()).value == 42
