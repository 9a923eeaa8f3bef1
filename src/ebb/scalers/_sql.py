"""Shared by the SQL scalers: turn the first row of a query's result into the metric value.

KEDA scans the first column of the first row into a float64 (`QueryRowContext(...).Scan(&f)`): no row,
NULL, several columns, a boolean or text that is not a number are errors; numeric text is accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

#: What Go's strconv.ParseFloat accepts for decimal text (no spaces, no underscores, no hex floats).
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

_EXPECTED = "the query must return one row whose single column is a number"


class QueryResultError(ValueError):
    """The query ran but did not return a usable number. The message names what came back instead."""


def _shown(value: str) -> str:
    # Query results are data, not credentials, but keep messages short.
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _type_name(value: Any) -> str:
    if isinstance(value, datetime):
        return "a timestamp"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time of day"
    if isinstance(value, timedelta):
        return "an interval"
    return f"a value of type {type(value).__name__}"


def number_from_text(text: str) -> float:
    """Numeric text as Go's ParseFloat reads it; QueryResultError otherwise."""
    if not _NUMERIC_TEXT.fullmatch(text):
        raise QueryResultError(f"the query returned the text {_shown(text)}, which is not a number; {_EXPECTED}")
    return float(text)


def query_value(row: Sequence[Any] | None) -> float:
    """The metric value from the first row of a result (None when there was no row)."""
    if row is None:
        raise QueryResultError(f"the query returned no rows; {_EXPECTED}")
    if len(row) != 1:
        raise QueryResultError(f"the query returned {len(row)} columns; {_EXPECTED}")
    value = row[0]
    if value is None:
        raise QueryResultError(
            f"the query returned NULL; {_EXPECTED} (wrap it in COALESCE(..., 0) if no data means zero)"
        )
    if isinstance(value, bool):
        raise QueryResultError(f"the query returned a boolean ({value}); {_EXPECTED}")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise QueryResultError(f"the query returned binary data; {_EXPECTED}") from None
        number = number_from_text(text)
    elif isinstance(value, str):
        number = number_from_text(value)
    else:
        raise QueryResultError(f"the query returned {_type_name(value)}; {_EXPECTED}")
    if not math.isfinite(number):
        raise QueryResultError(f"the query returned {value}, which is not a finite number; {_EXPECTED}")
    return number
