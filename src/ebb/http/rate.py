"""The request rate over a sliding window, with the HTTP add-on's window/granularity semantics.

The add-on (pkg/queue/bucketing.go, after Knative's aggregation/bucketing.go) keeps one counter per
`granularity` bucket in a ring covering `window`, and reports the average bucket: requests per granularity
period. A window only partly filled since the first request (or since a window-long silence) is averaged
over the buckets seen so far, not over the whole window; a silence shorter than the window counts as zeros;
after a whole window without requests the rate is 0. Time is passed in, so the rules are tested without
sleeping. Values are rounded to 3 digits, as the add-on does.
"""

from __future__ import annotations

import math


class RequestRate:
    """Requests per `granularity` seconds, averaged over `window` seconds."""

    def __init__(self, window: float, granularity: float) -> None:
        if granularity <= 0 or window <= 0:
            raise ValueError("window and granularity must be greater than 0")
        self.window = window
        self.granularity = granularity
        self._buckets = [0] * max(1, math.ceil(window / granularity))
        self._total = 0
        self._first: int | None = None  # bucket numbers (time // granularity)
        self._last: int | None = None

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.granularity)

    def record(self, now: float, count: int = 1) -> None:
        bucket = self._bucket(now)
        size = len(self._buckets)
        if self._last is None or self._first is None:
            self._first = self._last = bucket
        elif bucket > self._last:
            if bucket - self._last >= size:
                # A window-long silence: start over, averaging over a partial window again.
                self._buckets = [0] * size
                self._total = 0
                self._first = bucket
            else:
                for b in range(self._last + 1, bucket + 1):
                    self._total -= self._buckets[b % size]
                    self._buckets[b % size] = 0
            self._last = bucket
        elif bucket <= self._last - size:
            return  # older than the window
        elif bucket < self._first:
            self._first = bucket
        self._buckets[bucket % size] += count
        self._total += count

    def average(self, now: float) -> float:
        """The average bucket over the window ending at `now` (0 after a window without requests)."""
        if self._last is None or self._first is None:
            return 0.0
        bucket = self._bucket(now)
        size = len(self._buckets)
        gap = bucket - self._last
        if gap >= size:
            return 0.0
        total = self._total
        if gap > 0:
            # Buckets that slid out of the window since the last request.
            for b in range(self._last + 1, bucket + 1):
                total -= self._buckets[b % size]
        valid = min(self._last - self._first + 1, size)
        return round(total / valid, 3)
