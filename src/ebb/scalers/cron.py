"""`cron`: KEDA's cron scaler. A fixed replica count inside a recurring time window, nothing outside it.

Parity with KEDA's pkg/scalers/cron_scaler.go: the window is decided by comparing the *next* start with
the *next* end after now. If the next end comes first (or both coincide), the last event was a start and
now is inside the window: [start, end), across midnight and DST changes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    metric_name,
    param,
)

#: What the clock may return: an aware datetime, or seconds since the epoch (like `time.time`).
Clock = Callable[[], datetime | float]

# Any instant serves to check that a schedule ever fires; a leap year start lets "29 2" pass.
_PROBE = datetime(2024, 1, 1, tzinfo=UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_schedule(expr: str, key: str) -> str:
    expr = expr.strip()
    fields = expr.split()
    # KEDA's parser takes exactly minute, hour, day of month, month, day of week: no seconds, no @daily.
    if len(fields) != 5:
        raise PydanticCustomError(
            "cron",
            "{key} must be a 5-field cron expression (minute hour day-of-month month day-of-week), got {n} field(s)",
            {"key": key, "n": len(fields)},
        )
    try:
        croniter(expr, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        raise PydanticCustomError("cron", "{key} never fires (no date matches it)", {"key": key}) from None
    except (CroniterError, ValueError, KeyError) as exc:
        raise PydanticCustomError(
            "cron", "{key} is not a valid cron schedule: {err}", {"key": key, "err": str(exc)}
        ) from None
    return " ".join(fields)


class CronMetadata(ScalerMetadata):
    timezone: str = param(name="timezone", description="IANA name (`Europe/Paris`, `UTC`)")
    start: str = param(name="start", description="5-field cron expression (no seconds, no `@daily`)")
    end: str = param(name="end", description="5-field cron expression, different from `start`")
    desired_replicas: int = param(name="desiredReplicas", gt=0, description="> 0")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "timezone", "unknown time zone; use an IANA name such as Europe/Paris or UTC"
            ) from None
        return value

    @field_validator("start")
    @classmethod
    def _start_schedule(cls, value: str) -> str:
        return _check_schedule(value, "start")

    @field_validator("end")
    @classmethod
    def _end_schedule(cls, value: str, info: ValidationInfo) -> str:
        value = _check_schedule(value, "end")
        if info.data.get("start") == value:
            raise PydanticCustomError("cron", "start and end must differ (the window would be empty)")
        return value


def _name_part(expr: str) -> str:
    """KEDA's parseCronTimeFormat: how a schedule is spelled inside the metric name."""
    for old, new in ((" ", ""), ("*", "x"), ("/", "Sl"), ("?", "Qm"), (",", "Cm")):
        expr = expr.replace(old, new)
    return expr


class CronScaler(Scaler):
    type_name = "cron"
    Metadata = CronMetadata

    def __init__(self, ctx: TriggerContext, meta: Any) -> None:
        super().__init__(ctx, meta)
        self.meta: CronMetadata = meta
        self.zone = ZoneInfo(meta.timezone)
        #: Replace to test windows without waiting (returns an aware datetime or epoch seconds).
        self.clock: Clock = _utc_now

    def metric_spec(self) -> MetricSpec:
        m = self.meta
        suffix = f"cron-{m.timezone}-{_name_part(m.start)}-{_name_part(m.end)}"
        # Target 1 per replica: with AverageValue the HPA then asks for exactly desiredReplicas.
        return MetricSpec(name=metric_name(self.ctx, suffix), target=1, metric_type=self.ctx.metric_type)

    def now(self) -> datetime:
        """The clock's reading, in the trigger's time zone."""
        raw = self.clock()
        if isinstance(raw, datetime):
            if raw.tzinfo is None:
                raise ValueError("the clock returned a naive datetime; it must carry a time zone")
            return raw.astimezone(self.zone)
        return datetime.fromtimestamp(raw, self.zone)

    def in_window(self, now: datetime) -> bool:
        """True iff the next end comes no later than the next start (KEDA's rule)."""
        next_start = croniter(self.meta.start, now).get_next(datetime)
        next_end = croniter(self.meta.end, now).get_next(datetime)
        return not next_start < next_end

    async def read(self) -> ScalerReading:
        active = self.in_window(self.now())
        return ScalerReading(value=float(self.meta.desired_replicas) if active else 0.0, active=active)
