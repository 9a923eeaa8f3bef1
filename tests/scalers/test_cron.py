"""The cron scaler: window arithmetic against an injected clock, metric naming, metadata errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import TriggerContext, build_scaler
from ebb.scalers.cron import CronScaler

OFFICE = {"timezone": "UTC", "start": "0 9 * * *", "end": "0 17 * * *", "desiredReplicas": "3"}


def cron(metadata: dict[str, str], at: datetime | float) -> CronScaler:
    scaler = build_scaler("cron", metadata)
    assert isinstance(scaler, CronScaler)
    scaler.clock = lambda: at
    return scaler


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


WINDOWS = [
    # (case, metadata overrides, instant, active)
    ("a minute before start", {}, utc(2024, 5, 6, 8, 59), False),
    ("a second before start", {}, utc(2024, 5, 6, 8, 59, 59), False),
    ("exactly at start", {}, utc(2024, 5, 6, 9, 0), True),
    ("midday", {}, utc(2024, 5, 6, 12, 0), True),
    ("just before end", {}, utc(2024, 5, 6, 16, 59, 59), True),
    ("exactly at end", {}, utc(2024, 5, 6, 17, 0), False),
    ("evening", {}, utc(2024, 5, 6, 21, 0), False),
    # A night window spans midnight: the start is the day before the end.
    ("night: before start", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 6, 21, 59), False),
    ("night: at start", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 6, 22, 0), True),
    ("night: midnight", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 7, 0, 0), True),
    ("night: early morning", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 7, 5, 59), True),
    ("night: at end", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 7, 6, 0), False),
    ("night: midday", {"start": "0 22 * * *", "end": "0 6 * * *"}, utc(2024, 5, 7, 12, 0), False),
    # Weekdays only: 2024-05-11 is a Saturday, 2024-05-10 a Friday.
    ("weekdays: saturday", {"start": "0 9 * * 1-5", "end": "0 17 * * 1-5"}, utc(2024, 5, 11, 12), False),
    ("weekdays: friday", {"start": "0 9 * * MON-FRI", "end": "0 17 * * MON-FRI"}, utc(2024, 5, 10, 12), True),
    ("weekdays: friday night", {"start": "0 9 * * 1-5", "end": "0 17 * * 1-5"}, utc(2024, 5, 10, 18), False),
    # Berlin is UTC+2 in summer, UTC+1 in winter: the same UTC instant falls on either side of 09:00.
    ("berlin summer 09:30", {"timezone": "Europe/Berlin"}, utc(2024, 7, 1, 7, 30), True),
    ("berlin winter 08:30", {"timezone": "Europe/Berlin"}, utc(2024, 1, 15, 7, 30), False),
    ("berlin winter 09:30", {"timezone": "Europe/Berlin"}, utc(2024, 1, 15, 8, 30), True),
    ("berlin summer 17:30", {"timezone": "Europe/Berlin"}, utc(2024, 7, 1, 15, 30), False),
    ("berlin winter 16:30", {"timezone": "Europe/Berlin"}, utc(2024, 1, 15, 15, 30), True),
    # 2024-03-31 Berlin springs forward at 02:00 -> 03:00; a 01:00-04:00 window lasts two real hours.
    (
        "spring forward 01:30 CET",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 3, 31, 0, 30),
        True,
    ),
    (
        "spring forward 03:30 CEST",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 3, 31, 1, 30),
        True,
    ),
    (
        "spring forward 04:30 CEST",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 3, 31, 2, 30),
        False,
    ),
    # 2024-10-27 Berlin falls back at 03:00 -> 02:00; the window lasts four real hours.
    (
        "fall back 02:30 CEST",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 10, 27, 0, 30),
        True,
    ),
    (
        "fall back 03:30 CET",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 10, 27, 2, 30),
        True,
    ),
    (
        "fall back 04:30 CET",
        {"timezone": "Europe/Berlin", "start": "0 1 * * *", "end": "0 4 * * *"},
        utc(2024, 10, 27, 3, 30),
        False,
    ),
    # New York: 09:00 EDT is 13:00 UTC.
    ("new york 12:59 UTC", {"timezone": "America/New_York"}, utc(2024, 6, 3, 12, 59), False),
    ("new york 13:00 UTC", {"timezone": "America/New_York"}, utc(2024, 6, 3, 13, 0), True),
]


@pytest.mark.parametrize(("case", "overrides", "at", "active"), WINDOWS, ids=[w[0] for w in WINDOWS])
async def test_window(case: str, overrides: dict[str, str], at: datetime, active: bool) -> None:
    reading = await cron({**OFFICE, **overrides}, at).get_metric_and_activity()
    assert reading.active is active
    assert reading.value == (3.0 if active else 0.0)


async def test_clock_may_return_epoch_seconds() -> None:
    inside = utc(2024, 5, 6, 10, 0).timestamp()
    outside = utc(2024, 5, 6, 18, 0).timestamp()
    assert (await cron(OFFICE, inside).get_metric_and_activity()).active
    assert not (await cron(OFFICE, outside).get_metric_and_activity()).active


async def test_clock_given_in_another_zone_is_the_same_instant() -> None:
    from zoneinfo import ZoneInfo

    # 10:00 in Tokyo is 01:00 UTC: outside a 09:00-17:00 UTC window.
    at = datetime(2024, 5, 6, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert not (await cron(OFFICE, at).get_metric_and_activity()).active


async def test_desired_replicas_is_the_metric_value() -> None:
    reading = await cron({**OFFICE, "desiredReplicas": "17"}, utc(2024, 5, 6, 10)).get_metric_and_activity()
    assert reading.value == 17.0


async def test_naive_clock_is_a_scaler_error() -> None:
    with pytest.raises(ScalerError, match="naive"):
        await cron(OFFICE, datetime(2024, 5, 6, 10)).get_metric_and_activity()


def test_default_clock_is_now() -> None:
    scaler = build_scaler("cron", OFFICE)
    assert isinstance(scaler, CronScaler)
    now = scaler.now()
    assert abs((now - datetime.now(UTC)).total_seconds()) < 60
    assert now.tzinfo is not None


@pytest.mark.parametrize(
    ("metadata", "index", "name"),
    [
        (OFFICE, 0, "s0-cron-UTC-09xxx-017xxx"),
        ({**OFFICE, "timezone": "America/New_York"}, 1, "s1-cron-America-New_York-09xxx-017xxx"),
        (
            {**OFFICE, "start": "*/15 9-17 ? * 1,3", "end": "0 18 * * 1,3"},
            2,
            "s2-cron-UTC-xSl159-17Qmx1Cm3-018xx1Cm3",
        ),
    ],
)
def test_metric_name_like_keda(metadata: dict[str, str], index: int, name: str) -> None:
    spec = build_scaler("cron", metadata, ctx=TriggerContext(trigger_index=index)).metric_spec()
    assert spec.name == name


@pytest.mark.parametrize("metric_type", ["AverageValue", "Value"])
def test_target_is_one_replica(metric_type: Any) -> None:
    spec = build_scaler("cron", OFFICE, metric_type=metric_type).metric_spec()
    assert spec.target == 1
    assert spec.metric_type == metric_type


def test_parsing_keda_docs_example() -> None:
    # The example in KEDA's cron documentation; cron has no optional parameters.
    scaler = build_scaler(
        "cron",
        {"timezone": "Asia/Kolkata", "start": "30 * * * *", "end": "45 * * * *", "desiredReplicas": "10"},
    )
    assert scaler.describe() == {
        "timezone": "Asia/Kolkata",
        "start": "30 * * * *",
        "end": "45 * * * *",
        "desiredReplicas": 10,
    }


BAD = [
    # (case, overrides (None value removes the key), parameter named, message fragment)
    ("no timezone", {"timezone": None}, "timezone", "required"),
    ("no start", {"start": None}, "start", "required"),
    ("no end", {"end": None}, "end", "required"),
    ("no desiredReplicas", {"desiredReplicas": None}, "desiredReplicas", "required"),
    ("unknown timezone", {"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown time zone"),
    ("negative replicas", {"desiredReplicas": "-2"}, "desiredReplicas", "greater than 0"),
    ("zero replicas", {"desiredReplicas": "0"}, "desiredReplicas", "greater than 0"),
    ("replicas not an int", {"desiredReplicas": "two"}, "desiredReplicas", "integer"),
    ("fractional replicas", {"desiredReplicas": "1.5"}, "desiredReplicas", "integer"),
    ("seconds field", {"start": "0 0 9 * * *"}, "start", "5-field"),
    ("descriptor", {"end": "@daily"}, "end", "5-field"),
    ("out of range", {"start": "61 9 * * *"}, "start", "not a valid cron"),
    ("garbage", {"end": "a b c d e"}, "end", "not a valid cron"),
    ("never fires", {"start": "0 0 30 2 *"}, "start", "never fires"),
    ("same start and end", {"end": "0 9 * * *"}, "end", "must differ"),
    ("same after spacing", {"end": "0  9 * * * "}, "end", "must differ"),
]


@pytest.mark.parametrize(("case", "overrides", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_metadata_names_the_parameter(case: str, overrides: dict[str, str | None], key: str, fragment: str) -> None:
    metadata = {k: v for k, v in {**OFFICE, **overrides}.items() if v is not None}
    ctx = TriggerContext(namespace="shop", name="web", trigger_index=1)
    with pytest.raises(SpecError) as err:
        build_scaler("cron", metadata, ctx=ctx)
    assert err.value.obj == "ScaledObject shop/web"
    assert err.value.field == f"spec.triggers[1].metadata.{key}"
    assert fragment in err.value.message.lower() or fragment in err.value.message
