"""Reading a scaler the way its tests do."""

from __future__ import annotations

from ebb.scalers import Scaler


async def read_once(s: Scaler) -> tuple[float, bool]:
    """One reading (value, active), then the scaler closed."""
    try:
        r = await s.get_metric_and_activity()
    finally:
        await s.close()
    return r.value, r.active
