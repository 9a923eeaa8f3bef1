"""The request rate's window/granularity rules (the add-on's bucketing), on an injected clock."""

from __future__ import annotations

import pytest

from ebb.http.rate import RequestRate


def test_no_requests_is_zero() -> None:
    assert RequestRate(60, 1).average(1000.0) == 0.0


def test_a_partial_window_is_averaged_over_the_buckets_seen_so_far() -> None:
    rate = RequestRate(60, 1)
    for second in range(10):  # 5 requests a second for 10 s
        rate.record(1000.0 + second, 5)
    assert rate.average(1009.5) == 5.0


def test_a_full_window_averages_over_every_bucket_with_gaps_as_zero() -> None:
    rate = RequestRate(10, 1)
    for second in range(0, 20, 2):  # 4 requests every other second
        rate.record(1000.0 + second, 4)
    assert rate.average(1018.0) == 2.0


def test_buckets_that_slid_out_of_the_window_no_longer_count() -> None:
    rate = RequestRate(10, 1)
    for second in range(10):
        rate.record(1000.0 + second, 10)
    assert rate.average(1009.0) == 10.0
    # 5 s later without requests: 5 of the 10 buckets slid out; still averaged over the 10 valid ones.
    assert rate.average(1014.0) == 5.0


def test_after_a_window_of_silence_the_rate_is_zero_and_then_starts_over() -> None:
    rate = RequestRate(10, 1)
    for second in range(10):
        rate.record(1000.0 + second, 10)
    assert rate.average(1030.0) == 0.0
    rate.record(1030.0, 3)
    assert rate.average(1030.0) == 3.0  # a fresh partial window of one bucket


def test_granularity_makes_it_requests_per_bucket() -> None:
    rate = RequestRate(60, 2)
    rate.record(1000.0, 1)
    rate.record(1001.0, 1)
    assert rate.average(1001.0) == 2.0  # two requests in one 2 s bucket


def test_a_record_older_than_the_window_is_ignored() -> None:
    rate = RequestRate(10, 1)
    rate.record(1100.0, 1)
    rate.record(1000.0, 50)
    assert rate.average(1100.0) == 1.0


def test_rounded_to_three_digits() -> None:
    rate = RequestRate(60, 1)
    rate.record(1000.0, 1)
    rate.record(1002.0, 1)
    rate.record(1002.5, 0)
    assert rate.average(1002.0) == round(2 / 3, 3)


@pytest.mark.parametrize(("window", "granularity"), [(0, 1), (10, 0), (-1, 1)])
def test_window_and_granularity_must_be_positive(window: float, granularity: float) -> None:
    with pytest.raises(ValueError):
        RequestRate(window, granularity)
