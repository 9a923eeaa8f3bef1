"""`ebb status` says why fewer workers run than desired, and does not call them READY (KEDA's condition)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

from typer.testing import CliRunner

from ebb.cli import app
from ebb.observe.catalog import ObjectInfo
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import TriggerInfo

from ._records import SO, poll, trigger


def test_status_has_a_reason_column_for_missing_workers(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    store.register([ObjectInfo(SO, "ProcessGroup/workers", 1, 9, (TriggerInfo(0, "redis", "backlog"),))])
    record = poll(SO, time.time(), (trigger(0, 17.0, active=True),), current=2, desired=2, ready=0)
    reason = "workers-0: cannot start: No such file or directory (+1 more)"
    store.write([dataclasses.replace(record, reason=reason)])
    store.close()
    result = CliRunner().invoke(app, ["status", "--history", str(tmp_path / "history.db")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert "RUNNING" in header and "READY" not in header and header[-1] == "REASON"
    assert reason in result.output


def test_status_reads_a_history_written_before_the_reason_column(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    store.register([ObjectInfo(SO, "ProcessGroup/workers", 1, 9, (TriggerInfo(0, "redis", "backlog"),))])
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE objects DROP COLUMN reason")
    db.commit()
    db.close()
    readonly = HistoryStore(path, readonly=True)
    assert readonly.objects()[0]["reason"] is None
    readonly.close()
    HistoryStore(path).close()  # a writer adds the column back
    assert "reason" in {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(objects)")}
