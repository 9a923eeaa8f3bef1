"""The demo's job table: a queue in a SQLite file that several processes share safely (WAL, busy timeout)."""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done
    work_ms INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    done_at REAL,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
"""

#: What the ScaledObject's sqlite trigger counts: work not finished yet (waiting or in progress).
BACKLOG_QUERY = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"


def connect(path: Path) -> sqlite3.Connection:
    # Used from one asyncio task at a time, but through worker threads: allow the handoff.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def create(path: Path) -> None:
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    finally:
        conn.close()


def enqueue(conn: sqlite3.Connection, count: int, work_ms: tuple[int, int], rng: random.Random) -> None:
    now = time.time()
    rows = [(rng.randint(*work_ms), now) for _ in range(count)]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO jobs (work_ms, created_at) VALUES (?, ?)", rows)
    conn.execute("COMMIT")


def claim(conn: sqlite3.Connection, worker: str) -> tuple[int, int] | None:
    """Atomically take the oldest pending job; None when there is none."""
    row = conn.execute(
        "UPDATE jobs SET status = 'running', worker = ?, started_at = ? "
        "WHERE id = (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 1) "
        "RETURNING id, work_ms",
        (worker, time.time()),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def finish(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute("UPDATE jobs SET status = 'done', done_at = ? WHERE id = ?", (time.time(), job_id))


@dataclass(frozen=True)
class Counts:
    pending: int
    running: int
    done: int
    first_created: float | None
    first_started: float | None

    @property
    def backlog(self) -> int:
        return self.pending + self.running


def counts(conn: sqlite3.Connection) -> Counts:
    by_status = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    first_created, first_started = conn.execute("SELECT min(created_at), min(started_at) FROM jobs").fetchone()
    return Counts(
        pending=int(by_status.get("pending", 0)),
        running=int(by_status.get("running", 0)),
        done=int(by_status.get("done", 0)),
        first_created=first_created,
        first_started=first_started,
    )
