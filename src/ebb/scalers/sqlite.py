"""`sqlite`: ebb's own trigger (not in KEDA). One numeric query against a local SQLite file.

The embedded default source for `ebb demo` and local work. Shaped like KEDA's SQL scalers (postgresql:
`query`, `targetQueryValue`, `activationTargetQueryValue`). The file is opened read-only, so ebb can never
change it nor hold a write lock, and a busy timeout keeps a writer elsewhere from failing the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ebb.scalers._sql import QueryResultError, query_value
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    activity,
    metric_name,
    param,
)


class SqliteMetadata(ScalerMetadata):
    database_path: str = param(
        name="databasePath", min_length=1, description="relative to ebb's working directory, resolved once"
    )
    query: str = param(name="query", min_length=1, description="first column of the first row, numeric")
    target_query_value: float = param(name="targetQueryValue", gt=0, allow_inf_nan=False, description="> 0")
    activation_target_query_value: float = param(0.0, name="activationTargetQueryValue", allow_inf_nan=False)


class SqliteScaler(Scaler):
    type_name = "sqlite"
    Metadata = SqliteMetadata

    def __init__(self, ctx: TriggerContext, meta: Any) -> None:
        super().__init__(ctx, meta)
        self.meta: SqliteMetadata = meta
        # Resolved once: a later chdir in the process must not move the trigger to another file.
        self.path = Path(os.path.abspath(meta.database_path))
        # One connection per scaler, opened lazily by the first poll. Polls run through
        # asyncio.to_thread, so successive polls may land on different pool threads: the connection is
        # made with check_same_thread=False, which is safe because Python's sqlite3 module is built with
        # SQLite in serialized mode (sqlite3.threadsafety == 3) and this lock lets only one thread use the
        # connection at a time. A poll abandoned on timeout is interrupted (Connection.interrupt is meant
        # to be called from another thread), so it releases the lock instead of piling up threads.
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, "sqlite"),
            target=self.meta.target_query_value,
            metric_type=self.ctx.metric_type,
        )

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise self.error(f"databasePath {str(self.path)!r}: no such file")
        uri = f"{self.path.as_uri()}?mode=ro"
        try:
            # `timeout` is SQLite's busy timeout: wait for a writer's lock rather than fail at once.
            return sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self.error(f"cannot open databasePath {str(self.path)!r}: {exc}") from None

    def _query(self) -> float:
        if not self._lock.acquire(timeout=self.timeout):
            raise self.error("the previous query on this database is still running")
        try:
            if self._conn is None:
                self._conn = self._connect()
            try:
                cursor = self._conn.execute(self.meta.query)
                try:
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            except sqlite3.Error as exc:
                self._drop_connection()
                raise self.error(f"query failed: {exc}") from None
        finally:
            self._lock.release()
        try:
            # Like KEDA's SQL scalers (QueryRow(...).Scan into one float): extra rows are ignored,
            # no row, NULL, extra columns or non-numeric text are errors.
            return query_value(row)
        except QueryResultError as exc:
            raise self.error(str(exc)) from None

    def _drop_connection(self) -> None:
        # After a failure the connection may be the problem (file replaced, corruption): reopen next poll.
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    async def read(self) -> ScalerReading:
        try:
            value = await asyncio.to_thread(self._query)
        except asyncio.CancelledError:
            conn = self._conn
            if conn is not None:
                conn.interrupt()
            raise
        return ScalerReading(value=value, active=activity(value, self.meta.activation_target_query_value))

    def _close(self) -> None:
        with self._lock:
            self._drop_connection()

    async def close(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.interrupt()  # a poll still running would otherwise hold the lock until it ends
            await asyncio.to_thread(self._close)
